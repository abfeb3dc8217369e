"""A wheel that works anywhere: built from this checkout, installed without extras into a
fresh virtual environment, and run from an empty folder, far from the repo.

One wheel and one environment serve the whole module; each command and server runs in a folder of
its own that starts empty, with nothing of the checkout on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from attrs import frozen

from adapters.stores.ddl import drop_tables
from adapters.stores.mysql import MySQLConfig
from tests.support.client import Client
from tests.support.server import REPO, free_port
from tests.support.stores import mysql_url

pytestmark = pytest.mark.e2e

PACKAGES = ("domain", "application", "adapters", "entrypoints")

# What the checkout holds besides the source: copying it would be slow (environments, npm
# packages) or would put stale build output into the wheel.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "node_modules",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
    "*.sqlite3*",
)

# The kind of module a user names in SESSION_EVENTS: it only sees what register() is given.
EVENT_MODULE = """
def register(sio, sessions):
    @sessions.replies
    async def remember(sid, params):
        await sessions.handle(sid).set("n", params["n"])
        return {"ok": True}

    @sessions.replies
    @sessions.guarded("n")
    async def recall(sid, params=None):
        return {"ok": True, "n": sessions.handle(sid).get("n")}

    sio.on("mymod:remember", remember)
    sio.on("mymod:recall", recall)
"""


@frozen
class Installation:
    wheel: Path
    build_log: str
    venv: Path
    events: Path  # the folder holding mymod.py, the only entry of PYTHONPATH

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name

    def env(self, **settings: str) -> dict[str, str]:
        """The test's environment with only ``settings`` of ours and no path into the checkout.

        Built here rather than with tests.support.server.server_env, which turns the demo on:
        what a bare install does by default is what is tested.
        """
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("SESSION_", "SOCKETIO_", "PYTHON", "VIRTUAL_ENV"))
        }
        env.update(settings)
        env["PYTHONPATH"] = str(self.events)
        env["PYTHONUNBUFFERED"] = "1"
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return env

    def cli(self, cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin("socketio-session")), *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def _run(*command: str | Path, cwd: Path) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installation:
    root = tmp_path_factory.mktemp("wheel")
    # A copy, so that the build's own files (build/, *.egg-info) never land in the shared checkout.
    source = root / "source"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE)
    dist = root / "dist"
    # -v shows the build backend's output, where setuptools prints its deprecation warnings.
    build_log = _run(sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", dist, source, cwd=root)
    (wheel,) = dist.glob("*.whl")
    venv = root / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=root)
    # This environment's pip installs into the new one; constraints pin what the wheel pulls in.
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        venv / "bin" / "python",
        "install",
        "--quiet",
        "-c",
        REPO / "constraints.txt",
        wheel,
        cwd=root,
    )
    events = root / "events"
    events.mkdir()
    (events / "mymod.py").write_text(EVENT_MODULE, encoding="utf-8")
    return Installation(wheel=wheel, build_log=build_log, venv=venv, events=events)


@contextmanager
def mysql_table() -> Iterator[str]:
    """A fresh table name in the test database, dropped afterwards whatever created it."""
    table = f"wheel_{secrets.token_hex(5)}"
    try:
        yield table
    finally:
        import pymysql

        config = MySQLConfig.from_url(mysql_url())
        conn = pymysql.connect(
            host=config.host, port=config.port, user=config.user, password=config.password, database=config.database
        )
        try:
            with conn.cursor() as cursor:
                cursor.execute(drop_tables(table))
        finally:
            conn.close()


@contextmanager
def serving(installation: Installation, cwd: Path, env: dict[str, str]) -> Iterator[str]:
    """The installed ``uvicorn entrypoints.asgi:app`` running in ``cwd``; its URL once /healthz answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = cwd.parent / f"{cwd.name}-server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(installation.bin("uvicorn")), "entrypoints.asgi:app", "--host", "127.0.0.1", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"server did not answer /healthz within 30 s:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wheel_top_level(wheel: Path) -> list[str]:
    """The top-level import names the wheel declares (``top_level.txt``)."""
    with zipfile.ZipFile(wheel) as archive:
        (listing,) = (name for name in archive.namelist() if name.endswith(".dist-info/top_level.txt"))
        return archive.read(listing).decode().split()


def http_get(url: str) -> tuple[int, str, bytes]:
    """Status, content type and body; an error status is an answer here, not an exception."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers.get("content-type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("content-type", ""), error.read()


# -- the wheel and the installed packages ---------------------------------------------------


def test_the_wheel_carries_the_ddl_the_page_the_type_markers_and_the_license(installed: Installation) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        (metadata,) = (name for name in names if name.endswith(".dist-info/METADATA"))
        headers = wheel.read(metadata).decode()
    expected = {
        "adapters/stores/sql/mysql.sql",
        "adapters/stores/sql/sqlite.sql",
        "entrypoints/static/index.html",
        "entrypoints/static/app.js",
        "entrypoints/static/app.css",
        *(f"{package}/py.typed" for package in PACKAGES),
    }
    assert expected <= names
    # The DDL travels inside our packages: no top-level `sql` to clash with python-sql's.
    assert [name for name in names if name.startswith("sql/")] == []
    assert not any(name.endswith(".py") for name in names if name.startswith("adapters/stores/sql/"))
    assert "sql" not in wheel_top_level(installed.wheel)
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert "License-Expression: MIT" in headers.splitlines()
    assert "SetuptoolsDeprecationWarning" not in installed.build_log
    # Such as "Package 'adapters.stores.sql' is absent from the `packages` configuration", were the
    # data-only folder excluded from packages.find.
    assert "BuildBackendWarning" not in installed.build_log


def test_the_packages_import_from_the_new_environment_with_their_py_typed(
    installed: Installation, tmp_path: Path
) -> None:
    script = (
        "import importlib.util, json, sysconfig\n"
        "import domain, application, adapters, entrypoints\n"
        "from adapters.stores.ddl import ddl_path\n"
        "modules = (domain, application, adapters, entrypoints)\n"
        "print(json.dumps({'purelib': sysconfig.get_paths()['purelib'],"
        " 'files': {m.__name__: m.__file__ for m in modules},"
        " 'ddl': str(ddl_path('mysql')), 'sql': importlib.util.find_spec('sql') is not None}))\n"
    )
    result = subprocess.run(
        [str(installed.bin("python")), "-c", script],
        cwd=tmp_path,
        env=installed.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = json.loads(result.stdout)
    site_packages = Path(found["purelib"]).resolve()
    for name, file in found["files"].items():
        package = Path(file).resolve().parent
        assert package == site_packages / name, f"{name} imported from {file}, not from the installed wheel"
        assert (package / "py.typed").is_file()
    assert Path(found["ddl"]).resolve() == site_packages / "adapters" / "stores" / "sql" / "mysql.sql"
    assert Path(found["ddl"]).is_file()
    assert found["sql"] is False, "a top-level `sql` package was installed"


# -- the command line, from an empty folder ----------------------------------------------------


def test_the_cli_works_on_the_default_sqlite_store(installed: Installation, tmp_path: Path) -> None:
    env = installed.env()  # no SESSION_STORE_URL: the embedded store in the current folder
    schema = installed.cli(tmp_path, env, "schema")
    assert schema.returncode == 0, schema.stderr
    assert 'CREATE TABLE IF NOT EXISTS "socketio_session"' in schema.stdout
    for command in ("migrate", "check", "purge"):
        result = installed.cli(tmp_path, env, command)
        assert result.returncode == 0, f"{command}: {result.stderr}"
    assert (tmp_path / "sessions.sqlite3").is_file()


def test_the_cli_works_on_mariadb_and_names_the_shipped_ddl(installed: Installation, tmp_path: Path) -> None:
    with mysql_table() as table:
        env = installed.env(SESSION_STORE_URL=mysql_url(), SESSION_TABLE=table)
        schema = installed.cli(tmp_path, env, "schema")
        assert schema.returncode == 0, schema.stderr
        assert f"CREATE TABLE IF NOT EXISTS `{table}`" in schema.stdout
        missing = installed.cli(tmp_path, env, "check")
        assert missing.returncode == 1
        # The error names the DDL file where the wheel put it, a path the user can open.
        assert f"{installed.venv}" in missing.stderr
        assert "/adapters/stores/sql/mysql.sql" in missing.stderr
        assert "Traceback" not in missing.stderr
        for command in ("migrate", "check", "purge"):
            result = installed.cli(tmp_path, env, command)
            assert result.returncode == 0, f"{command}: {result.stderr}"
        assert table in result.stdout


# -- the server, from an empty folder ----------------------------------------------------------


def test_a_message_queue_without_the_redis_extra_stops_startup_in_one_line(
    installed: Installation, tmp_path: Path
) -> None:
    # Installed without extras, so Redis is truly absent here (not hidden, as in tests/e2e/test_startup.py).
    probe = subprocess.run(
        [str(installed.bin("python")), "-c", "import importlib.util; print(importlib.util.find_spec('redis'))"],
        cwd=tmp_path,
        env=installed.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert probe.stdout.strip() == "None"
    env = installed.env(SOCKETIO_MESSAGE_QUEUE="redis://127.0.0.1:6379/0", SESSION_RELAY_KEY="k" * 32)
    result = subprocess.run(
        [str(installed.bin("uvicorn")), "entrypoints.asgi:app", "--host", "127.0.0.1", "--port", str(free_port())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output
    named = [line for line in output.splitlines() if "pip install 'socketio-token-session[redis]'" in line]
    assert len(named) == 1, output


@pytest.fixture(scope="module", params=["sqlite", "mysql"])
def server(
    request: pytest.FixtureRequest, installed: Installation, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The installed server without SESSION_DEMO, with the test's own event module."""
    cwd = tmp_path_factory.mktemp(f"serve-{request.param}")
    if request.param == "sqlite":
        with serving(installed, cwd, installed.env(SESSION_EVENTS="mymod:register")) as url:
            yield url
        return
    with mysql_table() as table:
        env = installed.env(SESSION_STORE_URL=mysql_url(), SESSION_TABLE=table, SESSION_EVENTS="mymod:register")
        migrated = installed.cli(cwd, env, "migrate")
        assert migrated.returncode == 0, migrated.stderr
        with serving(installed, cwd, env) as url:
            yield url


async def test_the_health_check_answers_and_a_client_gets_and_resumes_a_token(server: str) -> None:
    status, content_type, body = http_get(server + "/healthz")
    assert (status, content_type, json.loads(body)["status"]) == (200, "application/json", "ok")
    async with Client(server) as client:
        created = await client.get_token("")
        assert (created["status"], created["errors"], len(created["token"])) == ("created", "", 43)
    async with Client(server) as client:
        assert (await client.get_token(created["token"]))["status"] == "resumed"


def test_without_session_demo_there_is_no_page(server: str) -> None:
    for path in ("/", "/static/app.js"):
        assert http_get(server + path)[0] == 404, path


async def test_an_event_module_named_in_session_events_answers_its_events(server: str) -> None:
    async with Client(server) as client:
        assert await client.call("mymod:remember", {"n": 1}) == {"ok": False, "error": "SessionNotReady"}
        await client.get_token("")
        assert await client.call("mymod:recall", {}) == {"ok": False, "error": "SessionKeyMissing"}
        assert await client.call("mymod:remember", {"n": 7}) == {"ok": True}
        assert await client.call("mymod:recall", {}) == {"ok": True, "n": 7}


def test_session_demo_serves_the_page_from_the_installed_package(installed: Installation, tmp_path: Path) -> None:
    with serving(installed, tmp_path, installed.env(SESSION_DEMO="1")) as url:
        status, content_type, body = http_get(url + "/")
        assert (status, content_type) == (200, "text/html; charset=utf-8")
        assert b'<script src="/static/app.js"' in body
        assert http_get(url + "/static/app.js")[:2] == (200, "text/javascript; charset=utf-8")
        # Installed, nothing in the checkout is looked at: no npm client to serve, the page uses the CDN.
        assert http_get(url + "/vendor/socket.io.min.js")[0] == 404
