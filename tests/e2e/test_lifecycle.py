"""Expiry, restarts and an unreachable store, each with a server of its own."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.client import Client
from tests.support.deployment import Deployment, deploy
from tests.support.stores import mysql_url
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["sqlite", "mysql"])
def short_lived(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    yield from deploy(str(request.param), tmp_path, SESSION_IDLE_TTL="1", SESSION_ABSOLUTE_TTL="60")


async def test_an_expired_session_gets_a_new_token_and_loses_its_data(short_lived: Deployment) -> None:
    async with Client(short_lived.server.url) as client:
        old = (await client.get_token(""))["token"]
        assert await client.call("demo:set", {"key": "secret", "value": 1}) == {"ok": True}
    await asyncio.sleep(1.2)
    async with Client(short_lived.server.url) as client:
        reply = await client.get_token(old)
        assert (reply["errors"], reply["status"]) == ("Session Expired", "expired")
        assert reply["token"] != old
        # The old package copied the expired data over; we do not.
        assert await client.call("demo:get", {"key": "secret"}) == {"ok": True, "value": ""}
    assert await short_lived.row(old) is None


@pytest.fixture(params=["sqlite", "mysql"])
def restartable(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    yield from deploy(str(request.param), tmp_path)


async def test_a_session_survives_a_server_restart(restartable: Deployment) -> None:
    async with Client(restartable.server.url) as client:
        token = (await client.get_token(""))["token"]
        assert await client.call("demo:set", {"key": "cart", "value": [1, 2]}) == {"ok": True}
    await asyncio.to_thread(restartable.server.restart)
    async with Client(restartable.server.url, auth={"token": token}) as client:
        assert (await client.next_token())["status"] == "resumed"
        assert await client.call("demo:get", {"key": "cart"}) == {"ok": True, "value": [1, 2]}


@pytest.fixture
async def behind_proxy(tmp_path: Path) -> object:
    target = urlsplit(mysql_url())
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 3306).start()
    proxied = mysql_url().replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}")
    deployments = deploy("mysql", tmp_path, SESSION_STORE_URL=proxied)
    # Starting uvicorn blocks; run it in a thread so the proxy (on this loop) keeps forwarding.
    deployment = await asyncio.to_thread(next, deployments)
    try:
        yield deployment, proxy
    finally:
        await proxy.cut()
        await asyncio.to_thread(lambda: next(deployments, None))


async def test_a_store_that_goes_away_is_reported_within_two_seconds_and_service_resumes(
    behind_proxy: tuple[Deployment, TcpProxy],
) -> None:
    deployment, proxy = behind_proxy
    async with Client(deployment.server.url) as client:
        token = (await client.get_token(""))["token"]
        assert await client.call("demo:set", {"key": "kept", "value": 1}) == {"ok": True}
        await proxy.cut()
        started = time.monotonic()
        reply = await client.get_token(token)
        elapsed = time.monotonic() - started
        assert reply == {"token": "", "errors": "Session Store Unavailable", "status": "unavailable"}
        assert elapsed < 2.0
        # A write now fails by name; nothing leaks.
        assert await client.call("demo:set", {"key": "kept", "value": 2}) == {
            "ok": False,
            "error": "StoreUnavailable",
        }
        health = await asyncio.to_thread(_status, deployment.server.url + "/healthz")
        assert health[0] == 503
        await proxy.start()  # the database is back: no restart of the app needed
        reply = await client.get_token(token)
        assert (reply["token"], reply["status"]) == (token, "resumed")
        assert await client.call("demo:get", {"key": "kept"}) == {"ok": True, "value": 1}
    assert "Traceback" not in deployment.server.log()


def _status(url: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
