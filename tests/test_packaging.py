"""The distribution as installed: its package list, its lazy imports, its migrations.

The SQL files live in ``migrations/`` at the repository root and ship inside the
package as ``breezeway_daemon.migrations``; both an editable install (this test
session's own) and a wheel built from the tree and installed into a fresh virtual
environment must run ``breezeway-daemon migrate``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).with_name("breezeway-daemon")
EXPECTED_MIGRATIONS = sorted(p.stem for p in (ROOT / "migrations").glob("*.sql"))


def declared_packages() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(config["tool"]["setuptools"]["packages"])


def test_the_package_list_names_every_package_in_the_tree() -> None:
    src = ROOT / "src"
    found = {".".join(init.parent.relative_to(src).parts) for init in src.rglob("__init__.py")} | {
        "breezeway_daemon.migrations"
    }
    assert declared_packages() == found


def test_building_the_parser_imports_no_simulator() -> None:
    """``serve``, ``run`` and ``status`` never pay for the simulator or its web server."""
    probe = (
        "import sys\n"
        "from breezeway_daemon import cli\n"
        "cli.build_parser()\n"
        "print(sorted(m for m in ('breezeway_sim', 'uvicorn', 'starlette') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_simulate_still_reaches_the_simulator_options() -> None:
    out = subprocess.run([str(BIN), "simulate", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "--companies" in out.stdout


async def migrate_with(executable: Path, database_url: str, **extra_env: str) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DATABASE_URL": database_url}
    env.update(extra_env)
    proc = await asyncio.create_subprocess_exec(
        str(executable), "migrate", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    return out.decode()


def applied_names(stdout: str) -> list[str]:
    return sorted(
        line.removeprefix("applied ") for line in stdout.splitlines() if line.startswith("applied ")
    )


async def test_an_editable_install_migrates_from_the_top_level_directory(
    empty_database: str,
) -> None:
    assert applied_names(await migrate_with(BIN, empty_database)) == EXPECTED_MIGRATIONS


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the tree, installed without its dependencies into a new venv."""
    work = tmp_path_factory.mktemp("wheel")
    tree = work / "tree"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("src", "migrations"):
        shutil.copytree(ROOT / name, tree / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(work / "dist"), str(tree)],
                   check=True, capture_output=True, cwd=work)  # fmt: skip
    (wheel,) = (work / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"breezeway_daemon/migrations/{m}.sql" for m in EXPECTED_MIGRATIONS} <= set(names)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "-q", "--disable-pip-version-check", "install",
                    "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True)  # fmt: skip
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import breezeway_daemon.migrations as m; print(m.__file__)"],
        env={"PYTHONPATH": dependencies_site()}, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert where.startswith(str(venv)), where
    return venv


def dependencies_site() -> str:
    """This session's site-packages, where the installed dependencies are."""
    return next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))


async def test_a_built_wheel_in_a_fresh_venv_migrates(
    installed_wheel: Path, empty_database: str
) -> None:
    # The dependencies come from this session's venv (no network); the package itself only
    # from the wheel: the editable finder is a .pth file, which PYTHONPATH entries never read.
    out = await migrate_with(
        installed_wheel / "bin" / "breezeway-daemon", empty_database, PYTHONPATH=dependencies_site()
    )
    assert applied_names(out) == EXPECTED_MIGRATIONS
