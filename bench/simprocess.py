"""The Breezeway simulator in a process of its own, for the benchmarks, driven over a pipe.

    from simprocess import SimProcess, age_reservations

    with SimProcess(companies=1, scale="prod", seed=1, data_rate_limit=None) as sim:
        sim.base_url                # "http://127.0.0.1:<port>": the port is chosen at start
        sim.companies[0]            # SimCompany: company_id, client_id, client_secret,
                                    #   property_ids; .credentials() for a region's settings
        sim.stats(window_s=6)       # {client_id: {"data_requests", "rate_limited",
                                    #   "max_requests_in_window"}}: every company's client
        sim.reset()                 # counters to zero, rate-limit windows emptied
        sim.set_faults(data_rate_limit_per_minute=200)   # any ``Faults`` field
        sim.advance(hours=1)        # the simulated clock moves; records change
        await age_reservations(database_url, 3600)  # ... and the daemon's record of the minute
        sim.webhook_faults(lose_rate=0.02); sim.webhook_log(); sim.truth(1001, "tasks")
        sim.cpu_s()                 # CPU seconds the simulator process has used
    # leaving the block stops the process (or call sim.stop())

The simulator (``breezeway_sim``) is built and served by uvicorn on 127.0.0.1 in a
*spawned* process, so the server has its own event loop and its own core and does not share
the benchmarked code's; generating the data (``prepare_s`` seconds, printed by some scripts)
happens there before the constructor returns. Start options: ``companies``; ``scale``, a
preset name or a ``Scale``; ``seed``; ``latency_s`` added to every request;
``data_rate_limit``, data requests per credential per rolling minute, and ``auth_limit``,
logins per credential per minute (defaults 200 and 1 as in the simulator; ``None`` = off);
``faults``, any other ``Faults`` fields. Every method blocks until the simulator answers; from
async code wrap it in ``asyncio.to_thread`` when the event loop must keep running meanwhile.
A failed command raises ``RuntimeError`` here and leaves the simulator running.

Run the scripts that use it as ``python bench/<script>.py`` (this folder on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from breezeway_daemon.config import Settings
    from breezeway_sim import Scale

__all__ = ["SimCompany", "SimProcess"]

START_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class SimCompany:
    """One simulated company: its id, API credential and property ids (sorted)."""

    index: int
    company_id: int
    client_id: str
    client_secret: str
    property_ids: list[int]

    def credentials(self) -> dict[str, Any]:
        """``client_id``, ``client_secret``, ``company_id``: one region of the settings."""
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "company_id": self.company_id,
        }


class SimProcess:
    """A simulator served in a spawned process; see the module docstring."""

    def __init__(
        self,
        companies: int = 1,
        scale: Scale | str = "small",
        seed: int = 1,
        *,
        latency_s: float = 0.0,
        data_rate_limit: int | None = 200,
        auth_limit: int | None = 1,
        faults: dict[str, Any] | None = None,
    ) -> None:
        changes = dict(
            faults or {},
            latency_s=latency_s,
            data_rate_limit_per_minute=data_rate_limit,
            auth_rate_limit_per_minute=auth_limit,
        )
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(
            target=_serve, args=(child, companies, scale, seed, changes), daemon=True
        )
        self._process.start()
        child.close()  # so that a child dying during start reads as EOF here
        try:
            if not self._conn.poll(START_TIMEOUT_S):
                raise RuntimeError(f"simulator did not start within {START_TIMEOUT_S:g} s")
            info = self._answer()
        except BaseException:
            self.stop()
            raise
        self.base_url: str = info["base_url"]
        self.prepare_s: float = info["prepare_s"]
        self.companies = [SimCompany(**c) for c in info["companies"]]

    def settings(self, database_url: str, name: str, **overrides: Any) -> Settings:
        """The daemon's settings against this simulator: one region per company
        (``region_<n>``), a fresh state directory, no env file; ``overrides`` on top."""
        from breezeway_daemon.config import load_settings

        return load_settings(
            Path("/nonexistent/bw-bench.env"),
            database_url=database_url,
            api_base_url=self.base_url,
            regions={f"region_{c.index}": c.credentials() for c in self.companies},
            state_dir=Path(tempfile.mkdtemp(prefix=f"bw-bench-{name}-")),
            **overrides,
        )

    def stats(self, window_s: float = 60.0) -> dict[str, dict[str, int]]:
        """Per client credential: data requests, 429s and the most in any ``window_s``."""
        return self._ask("stats", window_s)

    def reset(self) -> None:
        """Zero the counters and empty the data rate-limit windows."""
        self._ask("reset")

    def set_faults(self, **changes: Any) -> None:
        """Change ``Faults`` fields (``Faults.update``), e.g. ``data_rate_limit_per_minute``."""
        self._ask("faults", changes)

    def advance(self, hours: float = 1.0) -> dict[str, dict[str, dict[str, int]]]:
        """Move the simulated clock (records change, ``Simulator.advance``; company ids as
        strings). The data rate-limit windows are emptied, as they would be that much later."""
        return self._ask("advance", hours)

    def set_rates(self, changes: dict[str, dict[str, float]]) -> None:
        """Change how fast records change per simulated hour (``Rates.update``)."""
        self._ask("rates", changes)

    def webhook_faults(self, **changes: Any) -> None:
        """Lose, duplicate, reorder or delay webhook deliveries (``DeliveryFaults``)."""
        self._ask("webhook_faults", changes)

    def webhook_log(self) -> list[dict[str, Any]]:
        """Every webhook event the simulator made (``Event.as_json``), in order."""
        return self._ask("webhook_log")

    def truth(self, company_id: int, entity: str) -> dict[str, Any]:
        """``Simulator.truth`` (keys as strings)."""
        return self._ask("truth", (company_id, entity))

    def cpu_s(self) -> float:
        """User + system CPU seconds of the simulator process so far."""
        return self._ask("cpu")

    def stop(self) -> None:
        """Stop the server and the process (killed if it does not exit within 10 s)."""
        try:
            self._conn.send(("stop", None))
        except OSError:
            pass
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ask(self, command: str, arg: Any = None) -> Any:
        self._conn.send((command, arg))
        return self._answer()

    def _answer(self) -> Any:
        try:
            ok, value = self._conn.recv()
        except EOFError:
            self._process.join(1)
            raise RuntimeError(
                f"simulator process ended (exit code {self._process.exitcode})"
            ) from None
        if not ok:
            raise RuntimeError(f"simulator: {value}")
        return value


# --- in the simulator's process -----------------------------------------------------------
def _serve(conn: Connection, companies: int, scale: Any, seed: int, faults: dict[str, Any]) -> None:
    try:
        asyncio.run(_main(conn, companies, scale, seed, faults))
    except Exception as error:  # tell the parent rather than leave it waiting
        try:
            conn.send((False, f"{type(error).__name__}: {error}"))
        except OSError:
            pass
        raise


async def _main(
    conn: Connection, companies: int, scale: Any, seed: int, faults: dict[str, Any]
) -> None:
    from breezeway_sim import Simulator, SimulatorServer

    sim = Simulator(companies=companies, scale=scale, seed=seed)
    sim.faults.update(**faults)
    started = time.perf_counter()
    sim.prepare()
    prepare_s = time.perf_counter() - started

    def stats(window_s: float) -> dict[str, dict[str, int]]:
        clients = [c.client_id for c in sim.companies]
        clients += sorted(set(sim.stats.clients) - set(clients))
        return {
            client: {
                "data_requests": sim.stats[client].data_requests,
                "rate_limited": sim.stats[client].rate_limited,
                "max_requests_in_window": sim.stats.max_requests_in_window(client, window_s),
            }
            for client in clients
        }

    def reset(_: Any) -> None:
        sim.stats.reset()
        sim.data_limiter.reset()

    def advance(hours: float) -> dict[str, Any]:
        sim.data_limiter.reset()
        return {str(k): v for k, v in sim.advance(hours=hours).items()}

    def cpu(_: Any) -> float:
        times = os.times()
        return times.user + times.system

    commands = {
        "stats": stats,
        "reset": reset,
        "faults": lambda changes: sim.faults.update(**changes),
        "advance": advance,
        "cpu": cpu,
        "rates": lambda changes: sim.rates.update(changes),
        "webhook_faults": lambda changes: sim.webhooks.faults.update(**changes),
        "webhook_log": lambda _: [event.as_json() for event in sim.webhooks.log],
        "truth": lambda args: {str(k): v for k, v in sim.truth(*args).items()},
    }
    async with SimulatorServer(sim, host="127.0.0.1", port=0) as server:
        conn.send(
            (
                True,
                {
                    "base_url": server.base_url,
                    "prepare_s": prepare_s,
                    "companies": [
                        {
                            "index": c.index,
                            "company_id": c.company_id,
                            "client_id": c.client_id,
                            "client_secret": c.client_secret,
                            "property_ids": sorted(sim.data(c.company_id).properties),
                        }
                        for c in sim.companies
                    ],
                },
            )
        )
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_message() -> None:
            try:
                command, arg = conn.recv()
            except EOFError:
                command, arg = "stop", None
            if command not in commands:
                stop.set()
                return
            try:
                answer = (True, commands[command](arg))
            except Exception as error:  # a bad command must not stop the server
                answer = (False, f"{command}: {type(error).__name__}: {error}")
            conn.send(answer)

        loop.add_reader(conn.fileno(), on_message)
        try:
            await stop.wait()
        finally:
            loop.remove_reader(conn.fileno())


async def age_reservations(database_url: str, seconds: float) -> None:
    """Move the daemon's record of the API's minute (``api_request_reservations``, which a new
    ``SyncContext`` counts as another process's requests) ``seconds`` into the past, as if that
    time had passed. Pair it with ``sim.reset()`` or ``sim.advance()``, which empty the
    simulator's windows: without it, a measured phase would wait for the previous phase's last
    minute of requests, which the simulator has already forgotten."""
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE breezeway.api_request_reservations "
            "SET counts_until = counts_until - make_interval(secs => $1)",
            seconds,
        )
    finally:
        await conn.close()
