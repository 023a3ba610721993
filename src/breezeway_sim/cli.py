"""``breezeway-daemon simulate``: serve the simulator until SIGINT or SIGTERM.

Imported only by that command (``parse_args``), so no other command imports the simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from .companies import region_env_lines
from .generate import PRESETS
from .server import SimulatorServer
from .simulation import Simulator

__all__ = ["add_arguments", "parse_args", "serve"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``simulate`` options to ``parser``."""
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=8900, help="port (default 8900; 0 = any free port)"
    )
    parser.add_argument(
        "--companies", type=int, default=1, help="number of companies, one per region (default 1)"
    )
    parser.add_argument(
        "--scale",
        choices=sorted(PRESETS),
        default="small",
        help="data size per company (default small)",
    )
    parser.add_argument("--seed", type=int, default=1, help="data seed (default 1)")
    parser.add_argument(
        "--env", action="store_true", help="also print env-file lines for the daemon"
    )
    parser.add_argument(
        "--regions",
        default=None,
        help="comma-separated region names for --env (default region_1..region_N)",
    )
    parser.add_argument(
        "--control", action="store_true", help="enable the /_sim/ test-mode control endpoints"
    )
    parser.add_argument(
        "--auth-rate-limit",
        type=int,
        default=1,
        metavar="N",
        help="auth requests per minute per client (default 1; 0 = unlimited)",
    )
    parser.add_argument(
        "--data-rate-limit",
        type=int,
        default=200,
        metavar="N",
        help="data requests per minute per client (default 200; 0 = unlimited)",
    )


def _region_names(args: argparse.Namespace) -> list[str]:
    if args.regions:
        names = [n.strip() for n in args.regions.split(",") if n.strip()]
    else:
        names = [f"region_{i}" for i in range(1, args.companies + 1)]
    if len(names) != args.companies:
        raise ValueError(
            f"--regions names {len(names)} regions but --companies is {args.companies}"
        )
    return names


async def serve(args: argparse.Namespace) -> int:
    """Run the simulator until SIGINT/SIGTERM; 0 on a clean stop, 2 on bad arguments.

    Prints the fake credentials and company ids it accepts (they are the simulator's own, made up,
    so printing them is the point); with ``--env`` also the env-file lines for the daemon, one
    region per company, named ``region_1..region_N`` or by ``--regions a,b,c``.
    """
    try:
        sim = Simulator(companies=args.companies, scale=args.scale, seed=args.seed)
        names = _region_names(args) if args.env else []
    except ValueError as exc:
        print(f"breezeway-daemon simulate: {exc}", file=sys.stderr)
        return 2
    sim.faults.auth_rate_limit_per_minute = args.auth_rate_limit or None
    sim.faults.data_rate_limit_per_minute = args.data_rate_limit or None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with SimulatorServer(
            sim, host=args.host, port=args.port, control=args.control
        ) as server:
            print(
                f"Breezeway simulator listening on {server.base_url} ({args.scale} scale, seed {args.seed})"
            )
            if args.control:
                print(f"control endpoints enabled under {server.base_url}/_sim/")
            print("fake credentials it accepts:")
            for company in sim.companies:
                print(
                    f"  company_id={company.company_id} client_id={company.client_id}"
                    f" client_secret={company.client_secret}  ({company.name})"
                )
            if args.env:
                print("\n# env-file lines:")
                for line in region_env_lines(sim, server.base_url, names):
                    print(line)
            sys.stdout.flush()
            stop_task = asyncio.create_task(stop.wait())
            server_task = asyncio.create_task(server.wait())
            await asyncio.wait({stop_task, server_task}, return_when=asyncio.FIRST_COMPLETED)
            stop_task.cancel()
            server_task.cancel()
    except OSError as exc:
        print(
            f"breezeway-daemon simulate: cannot listen on {args.host}:{args.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The ``simulate`` options from ``argv``; exits 2 with one line on a usage error.

    The daemon's command line passes everything after ``simulate`` to ``parse_args`` and
    imports this module only then, so that no other command imports the simulator.
    """
    parser = argparse.ArgumentParser(
        prog="breezeway-daemon simulate", description=__doc__.splitlines()[0]
    )
    add_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: ``python -m breezeway_sim.cli``."""
    return asyncio.run(serve(parse_args(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    raise SystemExit(main())
