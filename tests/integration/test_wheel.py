"""A wheel installed outside the checkout works: the policy ships as package data, migrations
and the CLI run, and the data directory is the user's, never inside site-packages."""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wheels = tmp_path_factory.mktemp("wheels")
    built = subprocess.run(  # noqa: S603 - pip on this project
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if built.returncode != 0:
        pytest.skip(f"could not build the wheel here (no package index?): {built.stderr[-300:]}")
    [wheel] = wheels.glob("ordergate-*.whl")
    target = tmp_path_factory.mktemp("site")
    subprocess.run(  # noqa: S603
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    return target


def _ordergate(installed: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The installed package first, then the dependencies of this environment — but not its
    # site-packages as a site directory, whose editable install would point at the checkout.
    path = os.pathsep.join([str(installed), *site.getsitepackages()])
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "PYTHONPATH": path,
        "PYTHONNOUSERSITE": "1",
        "ORDERGATE_TOKEN_KEYS": "w-1:" + "w" * 40,
    }
    return subprocess.run(  # noqa: S603 - the installed CLI
        [
            sys.executable,
            "-S",
            "-c",
            "import sys; from api.cli import main; sys.exit(main())",
            *args,
        ],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_an_installed_wheel_migrates_checks_its_policy_and_keeps_data_out_of_site_packages(
    installed: Path, tmp_path: Path
) -> None:
    migrated = _ordergate(installed, tmp_path, "migrate")
    checked = _ordergate(installed, tmp_path, "policy", "check")
    where = _ordergate(
        installed,
        tmp_path,
        "policy",
        "explain",
        "--role",
        "cs",
        "--field",
        "Order.grossMargin",
    )

    assert migrated.returncode == 0, migrated.stderr
    assert (tmp_path / ".local" / "share" / "ordergate" / "ordergate.db").exists()
    assert not (installed / "var").exists()
    assert checked.returncode == 0, checked.stderr
    assert "0 problem(s)" in checked.stdout
    assert "cs on Order.grossMargin: NONE" in where.stdout
    assert (installed / "policies" / "policy.csv").exists()


def test_the_wheel_carries_graphiql_and_its_assets(installed: Path) -> None:
    static = installed / "api" / "static" / "graphiql"

    assert (static / "index.html").exists()
    assert (static / "ordergate-graphiql.js").exists()
    for name in (
        "graphiql.min.js",
        "graphiql.min.css",
        "react.production.min.js",
        "LICENSE.graphiql",
    ):
        assert (static / "vendor" / name).exists(), name
