"""Which secret shows up in which output: a secret itself, or for a JWT a telling part of it."""

from __future__ import annotations

from collections.abc import Mapping


def needles(secret: str) -> list[str]:
    """What would betray ``secret``: itself and, for a JWT, its claims or its signature
    alone (a cut-off token is a leak too; the header is the same in every token)."""
    found = [secret]
    parts = secret.split(".")
    if len(parts) == 3:
        found += [part for part in parts[1:] if len(part) >= 20]
    return found


def find_leaks(outputs: Mapping[str, str], secrets: Mapping[str, str]) -> list[str]:
    """``"<secret name> in <output name>"`` for every secret found in an output."""
    leaks = []
    for output, text in outputs.items():
        for name, secret in secrets.items():
            if any(needle in text for needle in needles(secret)):
                leaks.append(f"{name} in {output}")
    return leaks
