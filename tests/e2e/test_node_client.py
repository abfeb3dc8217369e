"""The old npm package's client snippet, verbatim, in Node with socket.io-client, against the real server.

``node/run_snippet.js`` runs ``node/old_client_snippet.js`` unchanged in a ``vm``
context whose ``io`` connects to our server, whose ``localStorage`` is a JSON
file (so a second run resumes the stored token) and whose ``console.log``
prints each ``gotToken`` message as a JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from attrs import define, field

from domain.token import Token
from tests.support.client import Client
from tests.support.deployment import Deployment

pytestmark = pytest.mark.e2e

NODE_DIR = Path(__file__).resolve().parent / "node"
HARNESS = NODE_DIR / "run_snippet.js"
NOTICE_HARNESS = NODE_DIR / "run_notice_snippet.js"  # the snippet plus the lines that take messages
SNIPPET = NODE_DIR / "old_client_snippet.js"
GOT_TOKEN_FIELDS = {"token", "errors", "status", "expires"}


@define
class SnippetRun:
    """What one run of the snippet printed: the logged ``gotToken`` messages, the steps' acks, the notices."""

    messages: list[dict[str, Any]] = field(factory=list)
    acks: list[Any] = field(factory=list)
    notices: list[tuple[Any, Any]] = field(factory=list)  # (payload, meta), as NOTICE_HARNESS logs them
    order: list[str] = field(factory=list)  # what each printed line was: "gotToken", "ack" or "notice"

    @property
    def only_message(self) -> dict[str, Any]:
        assert len(self.messages) == 1, self.messages
        return self.messages[0]


@define
class OldClient:
    """The snippet in Node, with one browser's ``localStorage`` kept in ``storage``."""

    node: str
    url: str
    storage: Path

    def preset(self, items: dict[str, str]) -> None:
        self.storage.write_text(json.dumps(items))

    def stored(self) -> dict[str, str]:
        loaded: dict[str, str] = json.loads(self.storage.read_text())
        return loaded

    async def run(self, *steps: str, transport: str = "", timeout: float = 20, harness: Path = HARNESS) -> SnippetRun:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SNIPPET_")}
        if transport:
            env["SNIPPET_TRANSPORT"] = transport
        process = await asyncio.create_subprocess_exec(
            self.node,
            str(harness),
            self.url,
            str(self.storage),
            *steps,
            cwd=NODE_DIR,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            pytest.fail(f"node {harness.name} did not finish within {timeout}s")
        stdout, stderr = out.decode(), err.decode()
        assert process.returncode == 0, f"exit {process.returncode}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        run = SnippetRun()
        for line in stdout.splitlines():
            printed = json.loads(line)
            if isinstance(printed, dict) and set(printed) == {"ack"}:
                run.acks.append(printed["ack"])
                run.order.append("ack")
            elif isinstance(printed, list) and len(printed) == 3 and printed[0] == "notice":
                run.notices.append((printed[1], printed[2]))
                run.order.append("notice")
            else:
                run.messages.append(printed)
                run.order.append("gotToken")
        return run


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the Node client tests need Node.js 20 or later")
    if not (NODE_DIR / "node_modules" / "socket.io-client").is_dir():
        pytest.fail(
            f"{NODE_DIR / 'node_modules' / 'socket.io-client'} is missing: "
            "run `npm ci --prefix tests/e2e/node` (`make test` does it)"
        )
    return node


@pytest.fixture
def old_client(deployment: Deployment, tmp_path: Path) -> OldClient:
    client = OldClient(_node(), deployment.server.url, tmp_path / "localStorage.json")
    client.preset({})
    return client


def assert_got_token(message: dict[str, Any], *, errors: str, status: str) -> str:
    """``message`` is a complete ``gotToken`` with these ``errors`` and ``status``; its token."""
    assert set(message) == GOT_TOKEN_FIELDS, message
    assert (message["errors"], message["status"]) == (errors, status)
    token = message["token"]
    assert isinstance(token, str)
    assert Token.parse(token).value == token
    assert len(token) == 43
    assert isinstance(message["expires"], int)
    assert message["expires"] > time.time()
    return token


def test_the_snippet_is_the_old_readme_verbatim() -> None:
    assert SNIPPET.read_text() == (
        'var socket = io("http://your.server.here"),\n'
        'token = localStorage.getItem("token") || "";\n'
        'socket.emit("getToken", {token: localStorage.getItem("token") || ""});\n'
        'socket.on("gotToken", function(message){\n'
        "console.log(message);\n"
        'if(message.token != "") {\n'
        'localStorage.setItem("token", message.token);\n'
        "token = message.token;\n"
        "}\n"
        "});\n"
    )


async def test_a_first_run_gets_and_stores_a_new_token(deployment: Deployment, old_client: OldClient) -> None:
    run = await old_client.run()
    token = assert_got_token(run.only_message, errors="", status="created")
    assert old_client.stored() == {"token": token}
    row = await deployment.row(token)
    assert row is not None
    assert dict(row.data) == {}


@pytest.mark.parametrize("transport", ["", "websocket"], ids=["polling-upgrade", "websocket"])
async def test_a_second_run_resumes_the_stored_token(
    deployment: Deployment, old_client: OldClient, transport: str
) -> None:
    first = assert_got_token((await old_client.run(transport=transport)).only_message, errors="", status="created")
    second = await old_client.run(transport=transport)
    assert assert_got_token(second.only_message, errors="", status="resumed") == first
    assert old_client.stored() == {"token": first}
    assert await deployment.row(first) is not None


async def test_session_data_survives_across_connections(deployment: Deployment, old_client: OldClient) -> None:
    stored = await old_client.run("set:visits:3")
    token = assert_got_token(stored.only_message, errors="", status="created")
    assert stored.acks == [{"ok": True}]
    row = await deployment.row(token)
    assert row is not None
    assert dict(row.data) == {"visits": 3}

    read = await old_client.run("get:visits")
    assert assert_got_token(read.only_message, errors="", status="resumed") == token
    assert read.acks == [{"ok": True, "value": 3}]
    assert old_client.stored() == {"token": token}


async def test_an_unknown_token_is_replaced(deployment: Deployment, old_client: OldClient) -> None:
    foreign = Token.generate().value
    assert len(foreign) == 43
    old_client.preset({"token": foreign})
    run = await old_client.run()
    token = assert_got_token(run.only_message, errors="Session Not Found", status="not_found")
    assert token != foreign
    assert old_client.stored() == {"token": token}
    assert await deployment.row(foreign) is None
    assert await deployment.row(token) is not None


@pytest.mark.parametrize(
    "junk",
    ["' OR 1=1 --", "undefined", "x" * 200, "тoken-with-cyrillic-т-and-padding-to-43-chars"],
    ids=["sql", "undefined", "too-long", "non-ascii"],
)
async def test_a_junk_token_is_replaced(deployment: Deployment, old_client: OldClient, junk: str) -> None:
    old_client.preset({"token": junk})
    run = await old_client.run()
    token = assert_got_token(run.only_message, errors="Session Not Found", status="invalid")
    assert old_client.stored() == {"token": token}
    assert await deployment.row(token) is not None


async def test_the_snippet_with_a_notice_handler_gets_what_waited_for_it_once(
    deployment: Deployment, old_client: OldClient
) -> None:
    """The snippet verbatim plus four lines (``socket.on("notice", (payload, meta, ack) => ...)``).

    A notice sent while it was away arrives after its ``gotToken`` when it comes back with its
    stored token; once it acknowledged it, the next run does not get it again.
    """
    user = f"node-{secrets.token_hex(4)}"
    login = await old_client.run(f"login:{user}", harness=NOTICE_HARNESS)
    assert login.acks == [{"ok": True}]
    assert [m["status"] for m in login.messages] == ["created", "rotated"]
    token = login.messages[-1]["token"]
    assert old_client.stored() == {"token": token}  # the snippet stored the rotated token
    assert login.notices == []

    async with Client(deployment.server.url) as sender:
        sent = await sender.call("demo:notify", {"userId": user, "text": "while you were away"})
        assert sent == {"ok": True, "queued": 1}
    back = await old_client.run("notices:1", harness=NOTICE_HARNESS)
    assert assert_got_token(back.only_message, errors="", status="resumed") == token
    assert back.order == ["gotToken", "notice"]
    payload, meta = back.notices[0]
    assert payload == {"text": "while you were away"}
    assert set(meta) == {"id", "sentAt", "replayed"}
    assert meta["replayed"] is True

    # Acknowledged: the next run gets only what was sent since (a later id comes after any earlier one).
    async with Client(deployment.server.url) as sender:
        sent = await sender.call("demo:notify", {"userId": user, "text": "since"})
        assert sent == {"ok": True, "queued": 1}
    later = await old_client.run("notices:1", harness=NOTICE_HARNESS)
    assert assert_got_token(later.only_message, errors="", status="resumed") == token
    assert [(p, m["id"]) for p, m in later.notices] == [({"text": "since"}, meta["id"] + 1)]
    store = deployment.store()
    await store.open()
    try:
        deadline = time.monotonic() + 5
        while await store.pending(Token(token).digest, now=time.time()):
            assert time.monotonic() < deadline, "the second acknowledgement was not stored"
            await asyncio.sleep(0.05)
    finally:
        await store.close()
