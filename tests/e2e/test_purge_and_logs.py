"""The background purge, the CLI purge, and logs that never hold a token."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.client import Client
from tests.support.deployment import Deployment, deploy
from tests.support.server import run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["sqlite", "mysql"])
def purging(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    yield from deploy(
        str(request.param), tmp_path, SESSION_IDLE_TTL="1", SESSION_ABSOLUTE_TTL="60", SESSION_PURGE_INTERVAL="0.5"
    )


async def test_the_background_task_purges_expired_sessions(purging: Deployment) -> None:
    async with Client(purging.server.url) as client:
        for _ in range(3):
            await client.get_token("")
    assert await purging.count_rows() == 3
    for _ in range(40):
        await asyncio.sleep(0.25)
        if await purging.count_rows() == 0:
            break
    assert await purging.count_rows() == 0


@pytest.fixture(params=["sqlite", "mysql"])
def idle(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    yield from deploy(str(request.param), tmp_path, SESSION_IDLE_TTL="1", SESSION_PURGE_INTERVAL="0")


async def test_the_cli_purges_in_batches_and_keeps_live_sessions(idle: Deployment) -> None:
    async with Client(idle.server.url) as client:
        for _ in range(5):
            await client.get_token("")
    await asyncio.sleep(1.1)
    async with Client(idle.server.url) as client:
        live = (await client.get_token(""))["token"]
    result = await asyncio.to_thread(run_cli, idle.env, "purge", "--batch", "2")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"purged 5 expired sessions from \S+ .+\n", result.stdout)
    assert "purged 4 expired sessions so far" in result.stderr  # progress, batch by batch
    assert await idle.count_rows() == 1
    assert await idle.row(live) is not None


@pytest.fixture
def chatty(tmp_path: Path) -> Iterator[Deployment]:
    yield from deploy("mysql", tmp_path, SESSION_IDLE_TTL="1", SESSION_HANDSHAKE_LIMIT="6")


async def test_a_full_run_logs_every_lifecycle_event_and_no_token(chatty: Deployment) -> None:
    seen: set[str] = set()
    async with Client(chatty.server.url) as client, Client(chatty.server.url) as other:
        first = await client.get_token("")  # created
        seen.add(first["token"])
        seen.add((await other.get_token(first["token"]))["token"])  # resumed
        await client.call("user:login", {"userId": "dave"})  # rotated
        seen.add((await client.next_token())["token"])
        seen.add((await other.next_token())["token"])  # the other socket lost the old token
        await client.call("user:logout")  # destroyed
        seen.add((await client.next_token())["token"])
        seen.add((await client.get_token("' OR 1=1 --"))["token"])  # invalid
        await asyncio.sleep(1.1)
        seen.add((await client.get_token(first["token"]))["token"])  # not found (rotated away)
        expiring = (await other.get_token(""))["token"]
        seen.add(expiring)
        await asyncio.sleep(1.1)
        seen.add((await other.get_token(expiring))["token"])  # expired
        replies = [await other.get_token("") for _ in range(4)]  # this socket's 4th to 7th handshakes
        assert replies[-1]["status"] == "rate_limited"
    log = chatty.server.log()
    for event in ("created", "resumed", "rotated", "destroyed", "invalid", "not_found", "expired", "rate_limited"):
        assert f"session {event} " in log, event
    seen.discard("")
    assert len(seen) >= 8
    for token in seen:
        assert token not in log
        assert token[:12] not in log
