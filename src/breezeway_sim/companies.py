"""Simulated companies, their fake credentials, and the env-file lines that point a daemon at them.

Company ``n`` (1-based) has ``company_id = 1000 + n``, ``client_id = "sim-client-n"`` and
``client_secret = "sim-secret-n-not-real"``: obviously fake, safe to print.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import vocab

if TYPE_CHECKING:
    from .simulation import Simulator

__all__ = ["Company", "make_companies", "region_env_lines"]


@dataclass(frozen=True)
class Company:
    """One simulated Breezeway company: one region's credential sees exactly this company."""

    index: int  # 1-based
    company_id: int
    name: str
    reference_company_id: str
    client_id: str
    client_secret: str

    @property
    def id_base(self) -> int:
        """Record ids of this company lie in ``[id_base, id_base + 10_000_000)``."""
        return self.index * 10_000_000

    def as_json(self) -> dict[str, object]:
        """The record ``GET /companies`` answers."""
        return {
            "id": self.company_id,
            "name": self.name,
            "reference_company_id": self.reference_company_id,
        }


def make_companies(count: int) -> list[Company]:
    """``count`` companies with ids 1001, 1002, ... and fake credentials."""
    if count < 1:
        raise ValueError("companies must be at least 1")
    if count > 200:
        raise ValueError("at most 200 companies (record ids must stay below 2**31)")
    companies = []
    for n in range(1, count + 1):
        base_name = vocab.COMPANY_NAMES[(n - 1) % len(vocab.COMPANY_NAMES)]
        cycle = (n - 1) // len(vocab.COMPANY_NAMES)
        companies.append(
            Company(
                index=n,
                company_id=1000 + n,
                name=base_name if cycle == 0 else f"{base_name} {cycle + 1}",
                reference_company_id=f"SIM-{1000 + n}",
                client_id=f"sim-client-{n}",
                client_secret=f"sim-secret-{n}-not-real",
            )
        )
    return companies


def _env_key(region: str) -> str:
    key = re.sub(r"[^A-Za-z0-9]+", "_", region.strip()).strip("_").upper()
    if not key:
        raise ValueError(f"region name {region!r} has no letters or digits")
    return key


def region_env_lines(sim: Simulator, base_url: str, region_names: Sequence[str]) -> list[str]:
    """The env-file lines that configure one region per name against ``sim`` at ``base_url``.

    Region ``i`` gets company ``i`` (in ``sim.companies`` order). Names are upper-cased and
    non-alphanumerics become ``_``. More names than companies is a ``ValueError``.
    """
    if len(region_names) > len(sim.companies):
        raise ValueError(
            f"{len(region_names)} regions but the simulator has {len(sim.companies)} companies"
        )
    lines = [f"BREEZEWAY_API_BASE_URL={base_url.rstrip('/')}"]
    for name, company in zip(region_names, sim.companies, strict=False):
        key = _env_key(name)
        lines.append(f"BREEZEWAY_REGIONS__{key}__CLIENT_ID={company.client_id}")
        lines.append(f"BREEZEWAY_REGIONS__{key}__CLIENT_SECRET={company.client_secret}")
        lines.append(f"BREEZEWAY_REGIONS__{key}__COMPANY_ID={company.company_id}")
    return lines
