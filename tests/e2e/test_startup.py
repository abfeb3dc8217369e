"""Startup: a missing schema or a bad setting stops the server with a clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import _deploy
from tests.support.client import Client
from tests.support.server import REPO, free_port, server_env
from tests.support.stores import mysql_url

pytestmark = pytest.mark.e2e


def _run_server(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uvicorn", "entrypoints.asgi:app", "--port", str(free_port())],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_missing_mysql_table_stops_startup_and_names_the_ddl() -> None:
    result = _run_server(server_env({"SESSION_STORE_URL": mysql_url(), "SESSION_TABLE": "never_created"}))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "table `never_created`" in output
    assert "sql/mysql.sql" in output
    assert "python -m entrypoints.cli migrate" in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SESSION_IDLE_TTL", "soon"),
        ("SESSION_MAX_BYTES", "-5"),
        ("SESSION_STORE_URL", "postgres://x/y"),
        ("SESSION_STORE_URL", "sqlite://"),
        ("SESSION_STORE_URL", "mysql://u:p@127.0.0.1:3306"),
        ("SESSION_STORE_URL", "mysql://u:p@127.0.0.1:abc/db"),
        ("SESSION_IDLE_TTL", "inf"),
        ("SOCKETIO_MESSAGE_QUEUE", "garbage"),
        ("SESSION_TABLE", "x; DROP TABLE y"),
    ],
)
def test_a_bad_setting_stops_startup_naming_the_variable(variable: str, value: str) -> None:
    result = _run_server(server_env({variable: value}))
    assert result.returncode != 0
    assert variable in result.stderr
    assert "Traceback" not in result.stderr


async def test_the_explicit_opt_in_creates_the_table(tmp_path: Path) -> None:
    table = f"auto_migrated_{free_port()}"
    deployments = _deploy("mysql", tmp_path, migrate=False, SESSION_TABLE=table, SESSION_AUTO_MIGRATE="1")
    deployment = next(deployments)
    try:
        assert f"created table {table}" in deployment.server.log()
        async with Client(deployment.server.url) as client:
            assert (await client.get_token(""))["status"] == "created"
    finally:
        next(deployments, None)
