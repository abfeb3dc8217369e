"""Startup: a missing schema or a bad setting stops the server with a clear line."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import socketio

from tests.support.client import Client
from tests.support.deployment import deploy
from tests.support.server import REPO, Server, free_port, run_until_exit, server_env
from tests.support.stores import mysql_url

pytestmark = pytest.mark.e2e


def test_a_missing_mysql_table_stops_startup_and_names_the_ddl() -> None:
    result = run_until_exit(server_env({"SESSION_STORE_URL": mysql_url(), "SESSION_TABLE": "never_created"}))
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
        ("SESSION_DEMO", "perhaps"),
        ("SOCKETIO_MESSAGE_QUEUE", "redis://127.0.0.1:6379/0"),  # without SESSION_RELAY_KEY
        ("SESSION_NEW_PER_ADDRESS", "0"),
        ("SESSION_ANON_TTL", "-1"),
        ("SESSION_MAX_PENDING_WRITES", "0"),
        ("SESSION_MAX_PER_USER", "none"),
    ],
)
def test_a_bad_setting_stops_startup_naming_the_variable(variable: str, value: str) -> None:
    result = run_until_exit(server_env({variable: value}))
    assert result.returncode != 0
    assert variable in result.stderr
    assert "Traceback" not in result.stderr


async def test_the_explicit_opt_in_creates_the_table(tmp_path: Path) -> None:
    table = f"auto_migrated_{free_port()}"
    deployments = deploy("mysql", tmp_path, migrate=False, SESSION_TABLE=table, SESSION_AUTO_MIGRATE="1")
    deployment = next(deployments)
    try:
        assert "created the schema: mysql " in deployment.server.log()
        assert f"table {table} (SESSION_AUTO_MIGRATE)" in deployment.server.log()
        async with Client(deployment.server.url) as client:
            assert (await client.get_token(""))["status"] == "created"
    finally:
        next(deployments, None)


def _startup_output(env: dict[str, str], *, without: str = "") -> subprocess.CompletedProcess[str]:
    """Run the stock app until it exits (it must), with module ``without`` made unimportable."""
    hide = f"sys.modules[{without!r}] = None; " if without else ""
    code = f"import sys; {hide}import uvicorn; uvicorn.run('entrypoints.asgi:app', port={free_port()})"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=30, check=False
    )


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("not a name", "is not of the form package.module:function"),
        ("no_such_module_here:register", "no module named 'no_such_module_here'"),
        ("json:no_such_function", "module 'json' has no function 'no_such_function'"),
    ],
)
def test_a_bad_session_events_value_is_one_line_naming_the_variable(value: str, complaint: str) -> None:
    result = run_until_exit(server_env({"SESSION_EVENTS": value}))
    assert result.returncode != 0
    assert "SESSION_EVENTS" in result.stderr
    assert complaint in result.stderr
    assert "Traceback" not in result.stderr


def test_a_message_queue_without_the_redis_extra_is_one_line_naming_the_extra() -> None:
    env = server_env({"SOCKETIO_MESSAGE_QUEUE": "redis://127.0.0.1:6379/0", "SESSION_RELAY_KEY": "k" * 32})
    result = _startup_output(env, without="redis")
    assert result.returncode != 0
    assert "pip install 'socketio-token-session[redis]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_wrong_mysql_password_stops_startup_with_the_servers_reason() -> None:
    url = mysql_url()
    scheme, rest = url.split("://", 1)
    credentials, host = rest.split("@", 1)
    user = credentials.split(":", 1)[0]
    wrong = f"{scheme}://{user}:Wr0ngSecret@{host}"
    result = run_until_exit(server_env({"SESSION_STORE_URL": wrong}))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "cannot start:" in output
    assert "Access denied" in output
    assert "Wr0ngSecret" not in output
    assert "Traceback" not in output


def test_an_unusable_sqlite_path_stops_startup_and_the_process_exits(tmp_path: Path) -> None:
    (tmp_path / "a-directory.sqlite3").mkdir()
    result = run_until_exit(server_env({"SESSION_STORE_URL": f"sqlite:///{tmp_path / 'a-directory.sqlite3'}"}))
    output = result.stdout + result.stderr
    assert result.returncode != 0  # and it returned at all: a leaked SQLite thread would hang it
    assert "cannot start:" in output
    assert "Traceback" not in output


def test_the_demo_is_off_by_default(tmp_path: Path) -> None:
    env = server_env({"SESSION_DEMO": "0", "SESSION_STORE_URL": f"sqlite:///{tmp_path / 's.sqlite3'}"})
    server = Server(env=env, log_path=tmp_path / "server.log").start()
    try:
        with pytest.raises(urllib.error.HTTPError) as page:
            urllib.request.urlopen(server.url + "/", timeout=5)
        assert page.value.code == 404

        async def login_is_not_an_event() -> None:
            async with Client(server.url, auth={"token": ""}) as client:
                assert (await client.next_token())["status"] == "created"
                with pytest.raises(socketio.exceptions.TimeoutError):  # no handler, so no ack
                    await client.call("user:login", {"userId": "mallory"}, timeout=1)

        asyncio.run(login_is_not_an_event())
        assert "SESSION_DEMO=1" not in server.log()
    finally:
        server.stop()


def test_the_demo_says_at_startup_that_anyone_can_log_in_as_anyone(tmp_path: Path) -> None:
    env = server_env({"SESSION_DEMO": "1", "SESSION_STORE_URL": f"sqlite:///{tmp_path / 's.sqlite3'}"})
    server = Server(env=env, log_path=tmp_path / "server.log").start()
    try:
        with urllib.request.urlopen(server.url + "/", timeout=5) as page:
            assert page.status == 200
        warning = next(line for line in server.log().splitlines() if "SESSION_DEMO=1" in line)
        assert "WARNING" in warning
        assert "anyone who can reach this server can log in as any user" in warning
    finally:
        server.stop()


def test_session_events_registers_the_applications_events(tmp_path: Path) -> None:
    (tmp_path / "my_events.py").write_text(
        "def register(sio, sessions):\n"
        "    async def hello(sid, payload=None):\n"
        "        return {'ok': True, 'bound': sessions.handle(sid).bound}\n"
        "    sio.on('app:hello', sessions.replies(hello))\n"
    )
    env = server_env(
        {
            "SESSION_DEMO": "0",
            "SESSION_EVENTS": "my_events:register",
            "SESSION_STORE_URL": f"sqlite:///{tmp_path / 's.sqlite3'}",
            "PYTHONPATH": str(tmp_path),
        }
    )
    server = Server(env=env, log_path=tmp_path / "server.log").start()
    try:

        async def hello() -> None:
            async with Client(server.url, auth={"token": ""}) as client:
                await client.next_token()
                assert await client.call("app:hello") == {"ok": True, "bound": True}

        asyncio.run(hello())
    finally:
        server.stop()


def test_an_unreachable_message_queue_stops_startup_in_one_line() -> None:
    env = server_env({"SOCKETIO_MESSAGE_QUEUE": "redis://:Qu3ueSecret@127.0.0.1:1/0", "SESSION_RELAY_KEY": "k" * 32})
    result = run_until_exit(env)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    [line] = [line for line in output.splitlines() if "cannot start:" in line]
    assert "cannot reach Redis at 127.0.0.1:1" in line
    assert "Qu3ueSecret" not in output
    assert "Traceback" not in output


def test_an_event_module_whose_register_takes_other_arguments_is_one_line() -> None:
    result = run_until_exit(server_env({"SESSION_EVENTS": "json:loads"}))
    assert result.returncode != 0
    assert "SESSION_EVENTS: json:loads must take two arguments, (sio, sessions)" in result.stderr
    assert "Traceback" not in result.stderr
