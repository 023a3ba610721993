"""Keeping secrets out of what leaves the process: alerts, bundles, error messages.

(``scrub`` for what the configuration holds and anything secret-shaped;
``scrub_credentials`` for what is certainly a credential; ``hold_tokens`` for tokens by value.)
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, unquote, urlsplit

if TYPE_CHECKING:  # at run time, errors.py imports this module: keep it free of config
    from breezeway_daemon.config import Settings

_URL_PASSWORD = re.compile(r"(://[^:/@\s]+):[^@\s]*@")
# Breezeway's scheme is "Authorization: JWT <token>", whatever the token looks like
# (long enough not to be a word: "JWT signature invalid" stays readable).
_BEARER = re.compile(r"(?i)\b(bearer\s+|jwt\s+(?=[A-Za-z0-9._~+/=-]{16}))[A-Za-z0-9._~+/=-]+")
_SECRET_PARAM = re.compile(
    r"(?i)\b((?:access_|refresh_|id_)?token|client_secret|secret|password|passwd|api_?key)"
    r"(\"?'?[ \t]*[:=][ \t]*\"?'?)(?!NULL\b)[^\s\"',;&}]+"
)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
MASK = "***"
# Tokens shorter than this are not masked by value (they would mask ordinary words).
MIN_HELD_TOKEN = 8
# Tokens rotate; the most recent ones are kept (50 regions x access + refresh, many times over).
MAX_HELD_TOKENS = 1024
_held: OrderedDict[str, None] = OrderedDict()


def hold_tokens(*tokens: str | None) -> None:
    """Mask these token values in everything scrubbed from now on (``None`` ignored)."""
    for token in tokens:
        if token is None or len(token) < MIN_HELD_TOKEN:
            continue
        _held[token] = None
        _held.move_to_end(token)
    while len(_held) > MAX_HELD_TOKENS:
        _held.popitem(last=False)


def _mask_held(text: str) -> str:
    if len(text) < MIN_HELD_TOKEN:
        return text
    for token in reversed(_held):
        if token in text:
            text = text.replace(token, MASK)
    return text


def configured_secrets(settings: Settings) -> list[str]:
    """Every secret value in ``settings``: SMTP password, client secrets, the webhook secret,
    database password."""
    found: list[str] = []
    if settings.smtp_password is not None:
        found.append(settings.smtp_password.get_secret_value())
    for region in settings.regions.values():
        found.append(region.client_secret.get_secret_value())
    if settings.webhook_secret is not None:
        found.append(settings.webhook_secret.get_secret_value())
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        try:
            parts = urlsplit(url)
            passwords = [parts.password, *parse_qs(parts.query).get("password", [])]
        except ValueError:
            passwords = []
        for password in filter(None, passwords):
            found += [password, unquote(password), quote(password, safe="")]
    # Longest first, so that a secret containing another is masked whole.
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without configured secrets, URL passwords, bearer tokens or token values."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    text = _mask_held(text)
    text = _URL_PASSWORD.sub(rf"\1:{MASK}@", text)
    text = _BEARER.sub(rf"\1{MASK}", text)
    text = _SECRET_PARAM.sub(rf"\1\2{MASK}", text)
    return _JWT.sub(MASK, text)


def scrub_credentials(text: str) -> str:
    """``text`` without held tokens, URL passwords, ``Bearer``/``JWT`` tokens or JWTs.

    ``configured_secrets(settings)`` lists every secret value the configuration holds; ``scrub(text,
    secrets)`` replaces them, and anything shaped like a URL password, a bearer token, a
    ``token=``/``secret=`` value or a JWT, with ``***``. ``scrub_credentials(text)`` removes only
    what is certainly a credential (a URL password, the token after ``Bearer``/``JWT``, a JWT): for
    error messages, which quote what an API or a library answered, and for log values. Both also
    mask, by value, every token the process holds (``hold_tokens``), whatever its shape: an API
    error body that echoes an opaque token loses it before it reaches a log line, an alert,
    ``last_error``, ``etl_sync_log.error_message`` or a bundle.
    """
    text = _mask_held(text)
    if "://" in text:
        text = _URL_PASSWORD.sub(rf"\1:{MASK}@", text)
    text = _BEARER.sub(rf"\1{MASK}", text)
    return _JWT.sub(MASK, text)
