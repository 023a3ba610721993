"""One ``breezeway-daemon`` command as a child process: its exit code and its output.

The child's environment is either this process's without any breezeway setting (the env
file decides), or with ``home`` a fresh login's (``PATH``, ``HOME``, ``LANG``), run in
``home``. Either way it is awaited, so that servers on this test's event loop keep serving.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).with_name("breezeway-daemon")
CLI_TIMEOUT_S = 90.0


def process_env(**extra: str) -> dict[str, str]:
    """This process's environment without any breezeway setting (the env file decides)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.upper().startswith(("BREEZEWAY_", "DATABASE_URL"))
    }
    env.pop("JOURNAL_STREAM", None)
    env.update(extra)
    return env


def login_env(home: Path, **extra: str) -> dict[str, str]:
    """What a fresh login shell would have: no BREEZEWAY_* or DATABASE_URL of the caller."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}
    env.update(extra)
    return env


@dataclass
class CliResult:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    @property
    def last_stderr_line(self) -> str:
        return self.stderr_lines[-1] if self.stderr_lines else ""

    def __str__(self) -> str:
        return f"{' '.join(self.args)}: exit {self.code}\n{self.stdout}\n{self.stderr}"


async def run_cli(
    *args: str,
    env_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
    timeout_s: float = CLI_TIMEOUT_S,
) -> CliResult:
    """``breezeway-daemon ARGS`` with ``BREEZEWAY_ENV_FILE=env_file`` and ``env`` (which wins)
    over this process's environment, or over a fresh login's in ``home``."""
    base = process_env() if home is None else login_env(home)
    if env_file is not None:
        base["BREEZEWAY_ENV_FILE"] = str(env_file)
    proc = await asyncio.create_subprocess_exec(
        str(BIN), *args, env={**base, **(env or {})}, cwd=home,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"breezeway-daemon {' '.join(args)} did not end") from None
    assert proc.returncode is not None
    return CliResult(
        args, proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    )
