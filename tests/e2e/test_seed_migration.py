"""A user of the old npm package stays signed in after `import-seed-table` and a switch to this server."""

from __future__ import annotations

import secrets
import time
from contextlib import contextmanager
from pathlib import Path

import pymysql
import pytest

from adapters.stores.ddl import drop_tables
from adapters.stores.mysql import MySQLConfig
from tests.support.client import Client
from tests.support.deployment import deploy
from tests.support.seed_table import OLD_DDL
from tests.support.server import run_cli, server_env
from tests.support.stores import mysql_url

pytestmark = pytest.mark.e2e


def _sql(statement: str, *params: object) -> None:
    config = MySQLConfig.from_url(mysql_url())
    conn = pymysql.connect(
        host=config.host,
        port=config.port,
        user=config.user,
        password=config.password,
        database=config.database,
        autocommit=True,
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute(statement, params or None)
    finally:
        conn.close()


async def test_an_old_session_resumes_after_the_import(tmp_path: Path) -> None:
    suffix = secrets.token_hex(5)
    old, table = f"e2e_old_{suffix}", f"e2e_{suffix}"
    token = secrets.token_urlsafe(24)  # the old package's tokens: 32 URL-safe characters
    assert len(token) == 32
    _sql(OLD_DDL.format(table=old))
    try:
        _sql(
            f"INSERT INTO `{old}` (sessionId, expires, data) VALUES (%s, %s, %s)",
            token,
            int(time.time()) + 3600,
            '{"userId": "u1", "visits": 4}',
        )
        env = server_env({"SESSION_STORE_URL": mysql_url(), "SESSION_TABLE": table})
        migrated = run_cli(env, "migrate")
        assert migrated.returncode == 0, migrated.stderr

        imported = run_cli(env, "import-seed-table", "--from", old)
        assert imported.returncode == 0, imported.stderr
        assert imported.stdout == (
            f"imported 1 sessions from {old} into {table} (skipped: 0 expired, 0 malformed token, "
            "0 bad data, 0 too large, 0 already present)\n"
        )
        assert "imported 1 of 1 rows so far" in imported.stderr

        with contextmanager(deploy)("mysql", tmp_path, SESSION_TABLE=table) as deployment:
            async with Client(deployment.server.url) as client:
                reply = await client.get_token(token)
                assert (reply["token"], reply["errors"], reply["status"]) == (token, "", "resumed")
                assert await client.call("demo:get", {"key": "visits"}) == {"ok": True, "value": 4}
                assert await client.call("user:securedEvent") == {"ok": True, "userId": "u1"}
                assert await client.call("demo:set", {"key": "visits", "value": 5}) == {"ok": True}

            # Imported again (say, by a deploy script): the session in use is left as it is.
            again = run_cli(env, "import-seed-table", "--from", old)
            assert again.returncode == 0, again.stderr
            assert again.stdout.startswith("imported 0 sessions")
            assert again.stdout.rstrip().endswith("1 already present)")
            async with Client(deployment.server.url) as client:
                reply = await client.get_token(token)
                assert (reply["token"], reply["status"]) == (token, "resumed")
                assert await client.call("demo:get", {"key": "visits"}) == {"ok": True, "value": 5}
    finally:
        _sql(f"DROP TABLE IF EXISTS `{old}`")
        _sql(drop_tables(table))  # deploy drops it too, unless the test failed before it ran
