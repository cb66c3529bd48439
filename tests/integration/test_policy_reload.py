"""The policy watcher: a refused version is reported once, a missing file once per change."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from api.app import _reload_policy
from domain.access import POLICY_DIR
from tests.api.test_audit import events
from tests.conftest import _api_for, settings_for


async def test_a_refused_policy_is_reported_once_and_a_missing_file_once_per_change(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    policy_dir = tmp_path / "policy"
    shutil.copytree(POLICY_DIR, policy_dir)
    settings = settings_for(database_url, tmp_path, ORDERGATE_POLICY_DIR=str(policy_dir))
    caplog.set_level(logging.INFO, logger="ordergate")
    async for api in _api_for(settings):
        runtime = api.app.state.runtime
        good = (policy_dir / "policy.csv").read_text()
        in_force = runtime.pdp.version

        (policy_dir / "policy.csv").write_text(good[: good.index("# compliance:")])
        for _ in range(5):  # five polls of the same refused version
            await _reload_policy(runtime, "file change")
        (policy_dir / "policy.csv").write_text(good[: good.index("# integration:")])
        for _ in range(3):  # another refused version: reported once more
            await _reload_policy(runtime, "file change")
        # A file Casbin cannot load at all (issue #29: audited on every poll, 24 in 12 s).
        (policy_dir / "policy.csv").write_text(good + "p, cs, read\n")
        for _ in range(4):
            await _reload_policy(runtime, "file change")
        (policy_dir / "policy.csv").unlink()
        for _ in range(5):
            await _reload_policy(runtime, "file change")
        (policy_dir / "policy.csv").write_text(good)
        await _reload_policy(runtime, "file change")

        refusals = [
            e for e in await events(api, action="policy.reload") if e["outcome"] == "failure"
        ]
        messages = [r.getMessage() for r in caplog.records]
        assert runtime.pdp.version == in_force
        assert len(refusals) == 3
        assert len({r["details"]["refused"] for r in refusals}) == 3
        assert "cannot be loaded" in refusals[2]["details"]["problems"][0]
        assert messages.count("policy refused; keeping the previous one") == 3
        assert messages.count("policy file missing; the policy in force stays") == 1
        assert messages.count("policy files are back") == 1
        assert not [r for r in caplog.records if r.exc_info]
        compliance = await api.gql("{ auditEvents(first: 1) { totalCount } }", as_="compliance")
        assert "errors" not in compliance


def test_startup_refuses_a_policy_that_fails_its_check(database_url: str, tmp_path: Path) -> None:
    from tests.integration.test_cli import _run

    policy_dir = tmp_path / "policy"
    shutil.copytree(POLICY_DIR, policy_dir)
    with (policy_dir / "policy.csv").open("a") as policy:
        policy.write("p, cs, Order.grossMargn, read, allow\n")

    done = _run(["serve"], database_url, tmp_path, env={"ORDERGATE_POLICY_DIR": str(policy_dir)})

    assert done.returncode == 2
    assert "ORDERGATE_POLICY_DIR" in done.stderr
    assert "fails its check" in done.stderr
    assert "Traceback" not in done.stderr
