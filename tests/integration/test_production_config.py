"""The production configuration that Dockerfile and compose.yaml start, run here as real
processes (this machine has no Docker daemon): secrets from `ordergate keys init` as files,
the environment compose.yaml gives the app, the Dockerfile's command."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.integration.test_live_server import _free_port

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))


def _compose_app_environment() -> dict[str, str]:
    compose = _compose()
    assert set(compose["services"]) == {"app", "worker", "db"}
    app = compose["services"]["app"]
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert set(app["secrets"]) == {"token_keys", "audit_key", "secrets_key"}
    return {k: str(v) for k, v in app["environment"].items()}


def test_the_worker_service_runs_ordergate_worker_with_the_apps_configuration() -> None:
    services = _compose()["services"]
    worker = services["worker"]
    assert worker["command"] == ["ordergate", "worker"]
    assert worker["environment"] == services["app"]["environment"]
    assert worker["secrets"] == services["app"]["secrets"]
    assert worker["depends_on"]["app"]["condition"] == "service_healthy"


def _dockerfile_command() -> list[str]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    [cmd] = re.findall(r'^CMD \["sh", "-c", "(.*)"\]$', text, re.M)
    assert "ENV ORDERGATE_ENV=production" in text
    return [part.strip() for part in cmd.replace('\\"', '"').split("&&")]


def test_the_container_configuration_starts_in_production_mode(
    any_database_url: str, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    made = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "api.cli", "keys", "init", "--dir", str(secrets)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "ORDERGATE_ENV": "production"},
    )
    assert made.returncode == 0, made.stderr
    assert oct((secrets / "token-keys").stat().st_mode & 0o777) == "0o600"

    env = {**os.environ, **_compose_app_environment()}
    assert env["ORDERGATE_ENV"] == "production"
    env.update(
        DATABASE_URL=any_database_url,  # instead of the db service
        ORDERGATE_TOKEN_KEYS_FILE=str(secrets / "token-keys"),  # instead of /run/secrets/…
        ORDERGATE_AUDIT_KEY_FILE=str(secrets / "audit-checkpoint-key.pem"),
        ORDERGATE_SECRETS_KEY_FILE=str(secrets / "secrets-key"),
        ORDERGATE_DATA_DIR=str(tmp_path / "data"),
    )
    migrate, serve = _dockerfile_command()
    port = _free_port()
    migrate_args = shlex.split(migrate)
    assert migrate_args == ["ordergate", "migrate"]
    migrated = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "api.cli", *migrate_args[1:]],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    serve_args = shlex.split(
        serve.removeprefix("exec ").replace('"$ORDERGATE_WORKERS"', env["ORDERGATE_WORKERS"])
    )
    assert serve_args[:2] == ["ordergate", "serve"]
    serve_args[serve_args.index("--port") + 1] = str(port)
    serve_args[serve_args.index("--host") + 1] = "127.0.0.1"
    server = subprocess.Popen(  # noqa: S603 - our own server
        [sys.executable, "-m", "api.cli", *serve_args[1:]],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail("the production server did not become ready")
        page = httpx.get(f"{base}/graphql", headers={"accept": "text/html"}, timeout=5)
        anonymous = httpx.post(f"{base}/graphql", json={"query": "{ viewer { username } }"})
        # The worker service's command, in the same environment: one round, then exit.
        worker = subprocess.run(
            [sys.executable, "-m", "api.cli", "worker", "--once"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)

    assert ready.json()["status"] == "ready"
    assert "og-login" not in page.text  # no GraphiQL in production
    assert anonymous.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert b'"mode": "production"' in stderr
    assert worker.returncode == 0, worker.stderr
