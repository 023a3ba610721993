"""The token cache: one valid access token per region, shared safely by the
tasks of a process and by processes (``TokenCache``; renewal rules above its constants).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import structlog

from breezeway_daemon import metrics
from breezeway_daemon.api.errors import AuthError, CredentialsRejected
from breezeway_daemon.config import RegionSettings, Settings
from breezeway_daemon.errors import describe
from breezeway_daemon.redact import hold_tokens

log = structlog.get_logger(__name__)

# ``breezeway.api_tokens`` is the source of truth, read on every ``get`` (one primary-key lookup),
# so a token an operator set to NULL (the runbook's "force token refresh") is never used again, even
# while the daemon runs.
#
# Renewing a token:
# - inside one process, one renewal per region at a time; concurrent callers wait for it and share
#   its result, a failure included (so a refused login or a hung auth endpoint is met once, not once
#   per waiting request);
# - across processes, under a transaction-scoped PostgreSQL advisory lock per region, re-reading the
#   row first, so that two processes never both spend a rotating refresh token;
# - with the refresh token while it is valid, else by logging in with the client credentials; the
#   auth endpoints' limit (1 per minute) is honoured by waiting for the 429's reset, never by
#   hammering;
# - a transient failure of an auth call (a timeout, a connection error, a 5xx) is retried
#   ``AUTH_RETRY_S`` later (the failed call counted against that limit), at most
#   ``MAX_AUTH_ATTEMPTS`` calls within ``MAX_AUTH_WAIT_S``;
# - wrong or inactive credentials are a permanent ``CredentialsRejected`` stored in ``last_error``;
#   the login is not tried again for that credential for ``LOGIN_COOLDOWN_S`` (so a batch does not
#   loop on it); a refresh answered "inactive client" is final too (no login after it);
# - a token is renewed ``token_renew_margin_s`` before its expiry, or half-way through its life when
#   it lives less than twice that (never on every call);
# - every token obtained or read from the table is held for masking (``redact.hold_tokens``): an API
#   error that echoes it, in whatever form, loses it before it reaches a log line, an alert,
#   ``last_error`` or the sync log.
LOGIN_PATH = "/public/auth/v1/"
REFRESH_PATH = "/public/auth/v1/refresh"
ACCESS_TTL_FALLBACK = timedelta(hours=24)
REFRESH_TTL_FALLBACK = timedelta(days=30)
LOGIN_COOLDOWN_S = 900.0
MAX_AUTH_WAIT_S = 130.0
MAX_AUTH_ATTEMPTS = 3
AUTH_RETRY_S = 61.0  # the auth endpoints allow one call per minute, failed calls included
TOKEN_LOCK_NAMESPACE = 0x746F6B  # "tok": the advisory-lock class of token renewals


def jwt_expiry(token: str, fallback: timedelta) -> datetime:
    """The ``exp`` claim of a JWT (no signature check), or now + ``fallback``."""
    try:
        payload = token.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return datetime.fromtimestamp(float(claims["exp"]), tz=UTC)
    except (IndexError, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        return datetime.now(UTC) + fallback


def credential_fingerprint(region: RegionSettings) -> str:
    """Identifies the credential tokens belong to, without revealing the secret."""
    material = f"breezeway-daemon\0{region.client_id}\0{region.client_secret.get_secret_value()}"
    return hashlib.sha256(material.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class TokenState:
    """What ``api_tokens`` says of a region; never printed with its tokens."""

    region: str
    has_access_token: bool
    expires_at: datetime | None
    refresh_expires_at: datetime | None
    last_refreshed_at: datetime | None
    generation: int
    last_error: str | None


class TokenCache:
    """Access tokens for every configured region, backed by ``api_tokens``."""

    def __init__(self, pool: asyncpg.Pool, http: httpx.AsyncClient, settings: Settings) -> None:
        self.pool = pool
        self.http = http
        self.settings = settings
        self._rejected: dict[str, tuple[str, float, str]] = {}  # region -> (fingerprint, when, why)
        self._auth_blocked_until: dict[str, float] = {}
        self._renewals: dict[str, asyncio.Future[str]] = {}
        self.renewals = 0

    def update_settings(self, settings: Settings) -> None:
        """Take a reloaded configuration; a changed credential forgets its rejection."""
        self.settings = settings
        for region in list(self._rejected):
            config = settings.regions.get(region)
            if config is None or credential_fingerprint(config) != self._rejected[region][0]:
                del self._rejected[region]

    # --- public API -------------------------------------------------------------
    async def get(self, region: str) -> str:
        """A valid access token for ``region``, renewed first if it is missing or near expiry."""
        token = await self._stored_token(region)
        if token is not None:
            return token
        return await self._renew(region, stale=None)

    async def renew_after_401(self, region: str, stale: str) -> str:
        """The API refused ``stale``: renew it once, however many callers saw the 401."""
        return await self._renew(region, stale=stale)

    async def force_refresh(self, region: str) -> str:
        """A new token now, whatever the stored one's state."""
        return await self._renew(region, stale=None, force=True)

    async def state(self, region: str) -> TokenState:
        row = await self.pool.fetchrow(
            "SELECT access_token IS NOT NULL AS has_access, token_expires_at, refresh_expires_at, "
            "last_refreshed_at, token_generation_count, last_error "
            "FROM breezeway.api_tokens WHERE region_code = $1",
            region,
        )
        if row is None:
            return TokenState(region, False, None, None, None, 0, None)
        return TokenState(
            region,
            row["has_access"],
            row["token_expires_at"],
            row["refresh_expires_at"],
            row["last_refreshed_at"],
            row["token_generation_count"],
            row["last_error"],
        )

    # --- reading ----------------------------------------------------------------
    def _config(self, region: str) -> RegionSettings:
        try:
            return self.settings.regions[region]
        except KeyError:
            raise AuthError(f"region {region!r} is not configured", region=region) from None

    def _usable(self, row: asyncpg.Record | None, config: RegionSettings) -> str | None:
        if row is None or row["access_token"] is None or row["token_expires_at"] is None:
            return None
        hold_tokens(row["access_token"])
        if row["credential_fingerprint"] != credential_fingerprint(config):
            return None
        margin = timedelta(seconds=self.settings.token_renew_margin_s)
        issued = row["last_refreshed_at"]
        if issued is not None:
            # A token that lives less than the margin would be renewed on every call.
            lifetime = row["token_expires_at"] - issued
            margin = max(timedelta(0), min(margin, lifetime / 2))
        if row["token_expires_at"] - margin <= datetime.now(UTC):
            return None
        return row["access_token"]

    async def _stored_token(self, region: str) -> str | None:
        row = await self.pool.fetchrow(
            "SELECT access_token, token_expires_at, last_refreshed_at, credential_fingerprint "
            "FROM breezeway.api_tokens WHERE region_code = $1",
            region,
        )
        return self._usable(row, self._config(region))

    # --- renewing ---------------------------------------------------------------
    async def _renew(self, region: str, *, stale: str | None, force: bool = False) -> str:
        """Join the region's renewal in progress, or start one.

        Everyone waiting shares its outcome, a failure included: a refused login or an
        auth endpoint that times out is met once, not once per waiting request.
        """
        config = self._config(region)
        self._raise_if_rejected(region, config)
        running = self._renewals.get(region)
        joined = running is not None
        if running is None:
            running = asyncio.ensure_future(self._renew_now(region, config, stale, force))
            self._renewals[region] = running
            running.add_done_callback(functools.partial(self._renewal_done, region))
        # Shielded: a caller cancelled (a run's time limit) leaves the renewal to the others.
        token = await asyncio.shield(running)
        if joined and stale is not None and token == stale:
            # The renewal joined kept the very token this caller saw refused: renew it.
            return await self._renew(region, stale=stale, force=force)
        return token

    def _renewal_done(self, region: str, task: asyncio.Future[str]) -> None:
        if self._renewals.get(region) is task:
            del self._renewals[region]
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every caller was cancelled

    async def _renew_now(
        self, region: str, config: RegionSettings, stale: str | None, force: bool
    ) -> str:
        # Another caller may have renewed since this one read the row.
        if not force:
            current = await self._stored_token(region)
            if current is not None and current != stale:
                return current
        failure: AuthError | None = None
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))", TOKEN_LOCK_NAMESPACE, region
            )
            await conn.execute(
                "INSERT INTO breezeway.api_tokens (region_code) VALUES ($1) "
                "ON CONFLICT (region_code) DO NOTHING",
                region,
            )
            row = await conn.fetchrow(
                "SELECT * FROM breezeway.api_tokens WHERE region_code = $1", region
            )
            current = None if force else self._usable(row, config)
            if current is not None and current != stale:
                return current  # another process renewed it
            try:
                access, refresh = await self._obtain(region, config, row)
            except AuthError as err:
                # Stored, then raised once the transaction committed: raising inside it
                # would roll the operator's only clue back.
                failure = err
                await conn.execute(
                    "UPDATE breezeway.api_tokens SET last_error = $2, last_error_at = now() "
                    "WHERE region_code = $1",
                    region,
                    describe(err),
                )
            else:
                await conn.execute(
                    """
                    UPDATE breezeway.api_tokens
                    SET access_token = $2, refresh_token = $3, token_expires_at = $4,
                        refresh_expires_at = $5, last_refreshed_at = now(),
                        token_generation_count = token_generation_count + 1,
                        last_error = NULL, last_error_at = NULL, credential_fingerprint = $6
                    WHERE region_code = $1
                    """,
                    region,
                    access,
                    refresh,
                    jwt_expiry(access, ACCESS_TTL_FALLBACK),
                    jwt_expiry(refresh, REFRESH_TTL_FALLBACK) if refresh else None,
                    credential_fingerprint(config),
                )
        metrics.token_renewal(region, failure is None)
        if failure is not None:
            log.warning("token_renewal_failed", region=region, error=describe(failure))
            raise failure
        self.renewals += 1
        log.info("token_renewed", region=region)
        return access

    def _raise_if_rejected(self, region: str, config: RegionSettings) -> None:
        rejected = self._rejected.get(region)
        if rejected is None:
            return
        fingerprint, when, why = rejected
        if (
            fingerprint == credential_fingerprint(config)
            and time.monotonic() - when < LOGIN_COOLDOWN_S
        ):
            raise CredentialsRejected(
                f"credentials rejected by the API ({why}); not retried until the "
                "configuration changes or the cooldown ends",
                region=region,
            )
        del self._rejected[region]

    def _reject(
        self, region: str, config: RegionSettings, answer: dict[str, Any] | None
    ) -> CredentialsRejected:
        """Remember that the API refused this credential, and say why."""
        error = answer.get("error") if answer else None
        if error == "inactive client":
            why = "inactive client"
        elif error:
            why = f"error: {error}"
        else:
            why = "no token in the answer"
        self._rejected[region] = (credential_fingerprint(config), time.monotonic(), why)
        return CredentialsRejected(f"invalid client credentials ({why})", region=region)

    async def _obtain(
        self, region: str, config: RegionSettings, row: asyncpg.Record | None
    ) -> tuple[str, str | None]:
        """New tokens: by refresh when possible, else by login."""
        refresh = row["refresh_token"] if row is not None else None
        hold_tokens(refresh)
        refresh_ok = (
            refresh is not None
            and row is not None
            and row["credential_fingerprint"] == credential_fingerprint(config)
            and (row["refresh_expires_at"] is None or row["refresh_expires_at"] > datetime.now(UTC))
        )
        if refresh_ok:
            answer = await self._auth_call(
                region, REFRESH_PATH, headers={"Authorization": f"JWT {refresh}"}
            )
            if answer is not None and answer.get("access_token"):
                return _held(answer)
            if answer is not None and answer.get("error") == "inactive client":
                # A login would say the same, after waiting out the auth rate limit.
                raise self._reject(region, config, answer)
            log.info("token_refresh_refused", region=region)
        body = {
            "client_id": config.client_id,
            "client_secret": config.client_secret.get_secret_value(),
        }
        answer = await self._auth_call(region, LOGIN_PATH, json=body)
        if not answer or not answer.get("access_token"):
            raise self._reject(region, config, answer)
        return _held(answer)

    async def _auth_call(self, region: str, path: str, **request: Any) -> dict[str, Any] | None:
        """POST to an auth endpoint, waiting out its rate limit and retrying a transient
        failure. None when refused (401)."""
        deadline = time.monotonic() + MAX_AUTH_WAIT_S
        failures = 0
        while True:
            wait = self._auth_blocked_until.get(region, 0.0) - time.monotonic()
            if wait > 0:
                if time.monotonic() + wait > deadline:
                    raise AuthError("auth endpoint rate limit: gave up waiting", region=region)
                await asyncio.sleep(wait)
            status: int | None = None
            try:
                response = await self.http.post(path, **request)
            except httpx.HTTPError as err:
                failure = f"auth request failed: {type(err).__name__}"
            else:
                status = response.status_code
                failure = f"auth server error {status}" if status >= 500 else None
            if failure is not None:
                failures += 1
                retry_at = time.monotonic() + AUTH_RETRY_S
                if failures >= MAX_AUTH_ATTEMPTS or retry_at > deadline:
                    raise AuthError(
                        f"{failure} ({failures} attempts)", region=region, status=status,
                        endpoint=path,
                    )  # fmt: skip
                self._auth_blocked_until[region] = retry_at
                log.warning("token_auth_retry", region=region, error=failure,
                            attempt=failures, delay_s=AUTH_RETRY_S)  # fmt: skip
                continue
            if response.status_code == 429:
                seconds = retry_after_seconds(response) or 60.0
                self._auth_blocked_until[region] = time.monotonic() + seconds
                log.warning("token_auth_rate_limited", region=region, wait_s=round(seconds, 1))
                if time.monotonic() + seconds > deadline:
                    raise AuthError(
                        f"auth endpoint rate limited for {seconds:.0f} s more",
                        region=region,
                        status=429,
                    )
                continue
            if response.status_code == 401:
                return None
            if response.status_code >= 400:
                raise AuthError(
                    "auth request refused", region=region, status=response.status_code,
                    endpoint=path, body=response.text[:300],
                )  # fmt: skip
            if not response.content.strip():
                return {}
            try:
                answer = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                raise AuthError(
                    "auth answer is not JSON", region=region, status=response.status_code
                ) from None
            return answer if isinstance(answer, dict) else {}


def _held(answer: dict[str, Any]) -> tuple[str, str | None]:
    """The access and refresh tokens of an auth answer, held for masking first."""
    access, refresh = str(answer["access_token"]), answer.get("refresh_token")
    refresh = str(refresh) if refresh else None
    hold_tokens(access, refresh)
    return access, refresh


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Seconds to wait after a 429: the body's ``details.retry_after`` (UTC), else the header."""
    try:
        details = orjson.loads(response.content).get("details") or {}
        moment = datetime.fromisoformat(str(details["retry_after"]))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - datetime.now(UTC)).total_seconds()
        if -5 < seconds < 3600:
            # The reset is given to the second: wait out the rest of that second too.
            return max(seconds, 0.0) + 1.0
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
        pass
    header = response.headers.get("Retry-After")
    if header:
        try:
            return max(float(header), 0.0)
        except ValueError:
            return None
    return None
