"""Tokens of the simulator: real HS256 JWTs made with the standard library.

(``TokenAuthority``: claims, validity, rotation and opaque tokens.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson

from .companies import Company

__all__ = ["TokenAuthority", "TokenError", "decode_jwt", "encode_jwt"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_HEADER = _b64(orjson.dumps({"alg": "HS256", "typ": "JWT"}))


def encode_jwt(claims: dict[str, Any], key: bytes) -> str:
    """An HS256 JWT carrying ``claims``."""
    signing_input = f"{_HEADER}.{_b64(orjson.dumps(claims))}"
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


class TokenError(Exception):
    """A token that is malformed, badly signed, expired, revoked or already used."""


def decode_jwt(token: str, key: bytes) -> dict[str, Any]:
    """The claims of a correctly signed HS256 JWT (expiry not checked here)."""
    try:
        header_b64, payload_b64, signature_b64 = token.split(".")
        signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
        expected = hmac.new(key, signing_input, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(signature_b64)):
            raise TokenError("bad signature")
        header = orjson.loads(_unb64(header_b64))
        if header.get("alg") != "HS256":
            raise TokenError("unsupported algorithm")
        claims = orjson.loads(_unb64(payload_b64))
    except TokenError:
        raise
    except (ValueError, UnicodeError, orjson.JSONDecodeError) as exc:
        raise TokenError("malformed token") from exc
    if not isinstance(claims, dict):
        raise TokenError("malformed token")
    return claims


@dataclass
class _ClientTokens:
    generation: int = 0
    live_refresh: set[str] | None = None


class TokenAuthority:
    """Issues and checks the tokens of every simulated client.

    Claims: ``sub`` (client_id), ``company_id``, ``type`` (``access`` or ``refresh``), ``jti``,
    ``gen`` (the client's token generation), ``iat`` and ``exp`` (Unix seconds, real wall-clock
    time: clients compare ``exp`` with their own clock, so advancing the simulated clock does not
    expire tokens).

    A token is valid while its signature checks, its ``exp`` is in the future, its ``gen`` is the
    client's current generation (``revoke`` bumps it: every token issued before stops working) and,
    for a refresh token, it has not been used yet (rotation: a refresh answers a new pair and the
    old refresh token is dead). Access tokens are not invalidated by a new login or a refresh.

    ``TokenAuthority.opaque = True``: tokens are issued as opaque random strings (no dots, not
    JWT-shaped), each mapped to its JWT on the server side; everything else stays the same.
    """

    def __init__(self, key: bytes, companies: list[Company]) -> None:
        self._key = key
        self._by_client = {c.client_id: c for c in companies}
        self._state = {c.client_id: _ClientTokens(live_refresh=set()) for c in companies}
        self._ids = itertools.count(1)
        self._verified: dict[str, dict[str, Any]] = {}
        self.opaque = False
        self._opaque: dict[str, str] = {}  # opaque token -> the JWT it stands for

    def company_of(self, client_id: str) -> Company | None:
        return self._by_client.get(client_id)

    def issue(self, company: Company, access_ttl_s: float, refresh_ttl_s: float) -> dict[str, str]:
        """A new ``{"access_token", "refresh_token"}`` pair."""
        state = self._state[company.client_id]
        now = time.time()
        base = {"sub": company.client_id, "company_id": company.company_id, "gen": state.generation}
        access = {
            **base,
            "type": "access",
            "jti": f"a{next(self._ids)}",
            "iat": int(now),
            "exp": math.ceil(now + access_ttl_s),
        }
        refresh_jti = f"r{next(self._ids)}"
        refresh = {
            **base,
            "type": "refresh",
            "jti": refresh_jti,
            "iat": int(now),
            "exp": math.ceil(now + refresh_ttl_s),
        }
        assert state.live_refresh is not None
        state.live_refresh.add(refresh_jti)
        return {
            "access_token": self._issued(encode_jwt(access, self._key)),
            "refresh_token": self._issued(encode_jwt(refresh, self._key)),
        }

    def _issued(self, jwt: str) -> str:
        if not self.opaque:
            return jwt
        token = secrets.token_hex(24)
        self._opaque[token] = jwt
        return token

    def _jwt(self, token: str) -> str:
        """The JWT an opaque token stands for (a JWT stands for itself)."""
        return self._opaque.get(token, token)

    def _claims(self, token: str) -> dict[str, Any]:
        # Every data request checks its token: remember the signature checks already done.
        token = self._jwt(token)
        claims = self._verified.get(token)
        if claims is None:
            claims = decode_jwt(token, self._key)
            if len(self._verified) >= 4096:
                self._verified.clear()
            self._verified[token] = claims
        return claims

    def _checked(self, token: str, kind: str) -> tuple[Company, dict[str, Any]]:
        claims = self._claims(token)
        if claims.get("type") != kind:
            raise TokenError(f"not an {kind} token" if kind == "access" else f"not a {kind} token")
        company = self._by_client.get(str(claims.get("sub")))
        if company is None:
            raise TokenError("unknown client")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= time.time():
            raise TokenError("token expired")
        if claims.get("gen") != self._state[company.client_id].generation:
            raise TokenError("token revoked")
        return company, claims

    def check_access(self, token: str) -> Company:
        """The company a valid access token belongs to, or ``TokenError``."""
        return self._checked(token, "access")[0]

    def peek_client(self, token: str) -> Company | None:
        """The company named by a correctly signed token, valid or not (for limits, stats)."""
        try:
            claims = decode_jwt(self._jwt(token), self._key)
        except TokenError:
            return None
        return self._by_client.get(str(claims.get("sub")))

    def check_refresh(self, token: str) -> Company:
        """The company of a live refresh token, or ``TokenError``; the token is not used up."""
        company, claims = self._checked(token, "refresh")
        live = self._state[company.client_id].live_refresh
        assert live is not None
        if claims.get("jti") not in live:
            raise TokenError("refresh token already used")
        return company

    def rotate(self, token: str, access_ttl_s: float, refresh_ttl_s: float) -> dict[str, str]:
        """Use up a live refresh token and answer a new pair."""
        company = self.check_refresh(token)
        claims = decode_jwt(self._jwt(token), self._key)
        live = self._state[company.client_id].live_refresh
        assert live is not None
        live.discard(claims["jti"])
        return self.issue(company, access_ttl_s, refresh_ttl_s)

    def revoke(self, company: Company) -> None:
        """Every token of this client stops working now."""
        state = self._state[company.client_id]
        state.generation += 1
        assert state.live_refresh is not None
        state.live_refresh.clear()
