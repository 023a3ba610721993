"""Plain HTTP calls to the simulator, as its own tests make them: ``Api``, an httpx client
(in-process or over real HTTP) plus the calls every test needs (login, paged listings)."""

from __future__ import annotations

from typing import Any

import httpx

from breezeway_sim import Simulator

API = "/public/inventory/v1"
LOGIN = "/public/auth/v1/"
REFRESH = "/public/auth/v1/refresh"


class Api:
    """An httpx client plus the calls every test needs."""

    API = API
    LOGIN = LOGIN
    REFRESH = REFRESH

    def __init__(self, client: httpx.AsyncClient, sim: Simulator) -> None:
        self.client = client
        self.sim = sim

    async def login(self, index: int = 0) -> dict[str, str]:
        """The token pair of company ``index`` (asserts the login worked)."""
        company = self.sim.companies[index]
        answer = await self.client.post(
            LOGIN, json={"client_id": company.client_id, "client_secret": company.client_secret}
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def headers(self, index: int = 0) -> dict[str, str]:
        """``Authorization: JWT <access token>`` for company ``index``."""
        return {"Authorization": f"JWT {(await self.login(index))['access_token']}"}

    async def get(self, path: str, headers: dict[str, str], **params: Any) -> httpx.Response:
        return await self.client.get(API + path, params=params, headers=headers)

    async def get_all(self, path: str, headers: dict[str, str], **params: Any) -> list[dict]:
        """Every record of a paged listing, page by page (ascending unless told)."""
        params = {"sort_order": "asc", "limit": 100, **params}
        records: list[dict] = []
        page = 1
        while True:
            answer = await self.get(path, headers, **params, page=page)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            records.extend(body["results"])
            if page >= body["total_pages"]:
                return records
            page += 1
