"""``breezeway-daemon webhooks subscribe|list|unsubscribe``: Breezeway's subscriptions of a
region, managed through ``/public/webhook/v1`` with the region's own credential.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from breezeway_daemon.api.client import BreezewayApi
from breezeway_daemon.config import Settings
from breezeway_daemon.errors import describe
from breezeway_daemon.redact import MASK
from breezeway_daemon.webhooks.receiver import KINDS

__all__ = ["SubscriptionError", "Subscriptions", "hook_url"]

WEBHOOK_PATH = "/public/webhook/v1"


class SubscriptionError(Exception):
    """A subscription call failed; the message says which region and why, without secrets."""


def hook_url(base: str, secret: str, kind: str) -> str:
    """``<base>/webhooks/<secret>/<kind>``."""
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SubscriptionError(f"--url must be an http(s) URL, not {base[:80]!r}")
    return f"{base.rstrip('/')}/webhooks/{secret}/{kind}"


@dataclass
class Subscriptions:
    """The subscription calls of every region, with the daemon's API client (tokens, pacing)."""

    settings: Settings
    api: BreezewayApi

    @property
    def secret(self) -> str:
        if self.settings.webhook_secret is None:
            raise SubscriptionError(
                "BREEZEWAY_WEBHOOK_SECRET is not set: the webhook URL needs it (and the daemon "
                "must run with BREEZEWAY_HTTP_LISTEN)"
            )
        return self.settings.webhook_secret.get_secret_value()

    def shown(self, text: str) -> str:
        """``text`` with the secret masked."""
        secret = self.settings.webhook_secret
        return text.replace(secret.get_secret_value(), MASK) if secret is not None else text

    async def _call(self, region: str, method: str, path: str, body: Any = None) -> Any:
        token = await self.api.tokens.get(region)
        client = self.api.client(region)
        try:
            async with client.pacer.slot():
                answer = await self.api.http.request(
                    method,
                    WEBHOOK_PATH + path,
                    json=body,
                    headers={"Authorization": f"JWT {token}"},
                    timeout=max(30.0, self.settings.http_timeout_s),
                )
        except httpx.HTTPError as err:
            raise SubscriptionError(f"{region}: {method} {path}: {describe(err)}") from None
        if answer.status_code >= 400:
            detail = answer.text.strip()[:300] or f"HTTP {answer.status_code}"
            raise SubscriptionError(
                self.shown(f"{region}: {method} {path} answered {answer.status_code}: {detail}")
            )
        return answer.json() if answer.content else None

    async def list(self, region: str) -> list[dict[str, Any]]:
        found = await self._call(region, "GET", "/subscriptions")
        return [s for s in found if isinstance(s, dict)] if isinstance(found, list) else []

    async def subscribe(self, region: str, base_url: str) -> list[str]:
        """Both kinds subscribed to this daemon's URL; one line per kind."""
        lines = []
        existing = await self.list(region)
        for kind in KINDS:
            url = hook_url(base_url, self.secret, kind)
            same = [s for s in existing if s.get("webhook_type") == kind and s.get("url") == url]
            if same:
                lines.append(f"{region}: {kind}: already subscribed (id {same[0].get('id')})")
                continue
            try:
                made = await self._call(
                    region, "POST", "/subscribe", {"webhook_type": kind, "url": url}
                )
            except SubscriptionError as err:
                raise SubscriptionError(
                    f"{err} - Breezeway's test event must reach the daemon: is it running "
                    f"with BREEZEWAY_HTTP_LISTEN, and does {self.shown(url)} reach it "
                    "through the proxy?"
                ) from None
            lines.append(f"{region}: {kind}: subscribed (id {made.get('id')}) {self.shown(url)}")
        return lines

    async def unsubscribe(self, region: str) -> list[str]:
        """Every task and property-status subscription of the region removed."""
        lines = []
        for sub in await self.list(region):
            if sub.get("webhook_type") not in KINDS:
                continue
            await self._call(region, "DELETE", f"/subscribe/{int(sub['id'])}")
            kind = sub.get("webhook_type")
            lines.append(
                f"{region}: {kind}: removed (id {sub['id']}) {self.shown(str(sub.get('url')))}"
            )
        return lines or [f"{region}: no subscriptions to remove"]

    async def describe_region(self, region: str) -> list[str]:
        subs = await self.list(region)
        if not subs:
            return [f"{region}: no subscriptions"]
        return [
            f"{region}: {s.get('webhook_type')}: id {s.get('id')} {self.shown(str(s.get('url')))}"
            for s in subs
        ]


async def run_subscriptions(
    settings: Settings, action: str, regions: list[str], base_url: str | None
) -> list[str]:
    """The ``webhooks`` command: prints a line per subscription; answers the failures.

    ``subscribe REGION|all --url https://public.host`` subscribes both kinds (task and
    property-status) to ``<url>/webhooks/<secret>/<kind>``; the secret comes from the configuration
    and is never printed (shown as ``***``). Each command is idempotent: a subscription already
    there is kept and said so, nothing to remove is not an error. Breezeway sends a test event
    before it accepts a subscription: when that fails, the daemon's listener is not reachable at the
    URL, and the message says so.
    """
    from breezeway_daemon.db.pool import open_pool

    failures: list[str] = []
    async with open_pool(settings, "breezeway-daemon webhooks", max_size=2) as pool:
        api = BreezewayApi(settings, pool)
        subs = Subscriptions(settings, api)
        try:
            for region in regions:
                try:
                    if action == "subscribe":
                        assert base_url is not None
                        lines = await subs.subscribe(region, base_url)
                    elif action == "unsubscribe":
                        lines = await subs.unsubscribe(region)
                    else:
                        lines = await subs.describe_region(region)
                except Exception as err:  # noqa: BLE001 - reported per region
                    failures.append(subs.shown(describe(err)))
                    continue
                for line in lines:
                    print(line)
        finally:
            await api.aclose()
    return failures
