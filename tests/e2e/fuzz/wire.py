"""The fuzzing socket: it sends each event, checks the answer against the model and the invariants.

One :class:`Wire` per test: a python-socketio client (replaced when an example reconnects),
a bystander client whose session nothing may touch, a store of its own to read rows back,
and the :class:`~tests.e2e.fuzz.model.Model` every answer is compared with.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from hypothesis import assume, event

from application.user_sessions import public_id
from domain.session import Session
from domain.token import Token
from tests.e2e.fuzz.invariants import (
    accepted,
    alarms_in,
    canonical,
    check_ack,
    check_token_message,
    refusal,
    short,
)
from tests.e2e.fuzz.model import MAX_BYTES, OK, Known, Model, doc_size, received
from tests.support.client import Client
from tests.support.deployment import Deployment
from tests.support.wire_strategies import WIRE_LIMIT, Action, Special, wire_chars


def wire_args(payload: Any, extra: tuple[Any, ...] = ()) -> Any:
    """The ``data`` argument of python-socketio's emit/call for ``payload`` (and ``extra`` arguments)."""
    if extra:
        return (received(payload), *extra)  # a tuple is sent as several arguments
    if payload is Special.ABSENT:
        return None  # the event carries no argument
    if payload is Special.NULL or payload is None:
        return (None,)  # one argument: null
    return payload


class Wire:
    """One fuzzing socket, a bystander session, and the model the answers are checked against."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.model = Model()
        self.client: Client | None = None
        self.store = deployment.store()
        self.log_start = self.log_offset = 0
        self.probes = 0
        self.bystander: Client | None = None
        self.bystander_user = f"bystander-{secrets.token_hex(8)}"
        self.bystander_row: Session | None = None

    # -- setup and teardown ------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.open()
        self.log_start = self.log_offset = self.deployment.server.log_path.stat().st_size
        self.bystander = Client(self.deployment.server.url)
        await self.bystander.__aenter__()
        await self.bystander.get_token("")
        data = {"color": "teal", "$.a": "b", "😀": "🎉", "-lead": -1, "nested": {"l": [1, 2.5, None, True], "s": "'--"}}
        for key, value in data.items():
            assert await self.bystander.call("demo:set", {"key": key, "value": value}) == {"ok": True}
        assert await self.bystander.call("user:login", {"userId": self.bystander_user}) == {"ok": True}
        self.model.bystander_token = (await self.bystander.next_token())["token"]
        assert await self.bystander.call("demo:set", {"key": "after", "value": [1, {"x": "y"}]}) == {"ok": True}
        self.bystander_row = await self.store.fetch(Token(self.model.bystander_token).digest)
        assert self.bystander_row is not None
        assert self.bystander_row.user_id == self.bystander_user
        await self.connect()

    async def finish(self) -> None:
        try:
            # Invariant 4, read back through a store of its own, and invariant 5 over the whole test.
            assert await self.deployment.row(self.model.bystander_token) == self.bystander_row
            assert self.bystander is not None
            assert self.bystander.no_more_tokens()
            log = self.deployment.server.log_path.read_bytes()[self.log_start :].decode(errors="replace")
            assert "Traceback" not in log, log[-4000:]
        finally:
            for client in (self.client, self.bystander):
                if client is not None and client.sio.connected:
                    await client.sio.disconnect()
            await self.store.close()

    async def connect(self, auth: Any = None) -> None:
        """A new socket (no session unless ``auth`` carries a token)."""
        if self.client is not None and self.client.sio.connected:
            await self.client.sio.disconnect()
        self.client = Client(self.deployment.server.url, auth=auth)
        await self.client.__aenter__()
        self.model.disconnected()

    @property
    def socket(self) -> Client:
        assert self.client is not None
        return self.client

    # -- one example ---------------------------------------------------------------------------

    async def run(self, start: str, actions: list[Action]) -> None:
        for action in actions:
            assume(wire_chars(action) <= WIRE_LIMIT)
        await self.prepare(start)
        for action in actions:
            await self.act(action)
        await self.after_example()

    async def prepare(self, start: str) -> None:
        model = self.model
        if self.client is None or not self.client.sio.connected:
            await self.connect()  # the last example lost the socket (and failed for it)
        if start == "none":
            await self.connect()
        elif start == "new" or model.token is None or doc_size(model.current.data) > MAX_BYTES // 4:
            await self.new_session()

    async def after_example(self) -> None:
        await self.probe()
        await self.check_bystander()
        self.check_log("after the example")

    async def act(self, action: Action) -> None:
        payload = self.model.resolve(action.payload)
        context = f"{action.event} {action.mode} {short(payload)}" + (
            f" + {short(action.extra)}" if action.extra else ""
        )
        if action.event == "getToken":
            await self.get_token(payload, action.mode, action.extra, context)
        elif action.extra:
            await self.extra_arguments(action.event, payload, action.extra, context)
        else:
            handlers = {
                "demo:set": self.demo_set,
                "demo:get": self.demo_get,
                "user:login": self.login,
                "user:securedEvent": self.secured,
                "user:logout": self.logout,
                "user:sessions": self.list_sessions,
                "user:endSession": self.end_session,
            }
            await handlers[action.event](payload, context)
        assert self.socket.sio.connected, f"{context}: the server dropped the socket"
        assert self.socket.no_more_tokens(), f"{context}: unexpected gotToken {self.socket.tokens.get_nowait()}"
        await self.check_rows(context)
        self.check_log(context)

    # -- sending ----------------------------------------------------------------------------------

    async def call(self, name: str, payload: Any, extra: tuple[Any, ...] = ()) -> Any:
        """Send a fuzzed event and note its outcome for --hypothesis-show-statistics."""
        ack = await self.socket.call(name, wire_args(payload, extra))
        if isinstance(ack, dict) and "ok" in ack:
            event(f"{name} -> {'ok' if ack.get('ok') else ack.get('error')}")
        return ack

    def took_token(self, message: dict[str, Any], expected: str, presented: Any, context: str) -> None:
        """Check a handshake's answer against the model and move the socket to its session."""
        event(f"getToken -> {message['status']}")
        assert message["status"] == expected, f"{context}: expected {expected}, got {short(message)}"
        if expected == "resumed":
            assert message["token"] == presented, f"{context}: resumed another token"
            self.model.resume(presented)
            return
        token = message["token"]
        assert token != presented, f"{context}: adopted the presented token"
        assert token not in self.model.sessions, f"{context}: handed out a live token again"
        assert token not in self.model.dead, f"{context}: handed out an ended token again"
        self.model.adopt(token)

    def moved(self, message: dict[str, Any], status: str, context: str, keep: Known | None = None) -> None:
        """The server moved the socket to another token (rotation, logout, session ended)."""
        check_token_message(message, context)
        assert message["status"] == status, f"{context}: expected a {status} gotToken, got {short(message)}"
        assert self.model.token is not None
        new = message["token"]
        assert new not in self.model.sessions, f"{context}: moved to a live token"
        assert new not in self.model.dead, f"{context}: moved to an ended token"
        self.model.move(new, keep)

    async def new_session(self) -> None:
        message = check_token_message(await self.socket.get_token(""), "getToken ''")
        self.took_token(message, "created", "", "getToken ''")

    # -- getToken ---------------------------------------------------------------------------------

    async def get_token(self, payload: Any, mode: str, extra: tuple[Any, ...], context: str) -> None:
        data = received(payload)
        expected = self.model.expect_handshake(data, connect=mode == "connect", extra=bool(extra))
        presented = data.get("token", "") if isinstance(data, dict) else None
        if mode == "connect":
            await self.connect(None if payload is Special.ABSENT else payload)
            if expected is None:
                # No session: events that need one say so, and no gotToken comes.
                ack = check_ack(await self.call("demo:get", {"key": "probe"}), context)
                assert ack == refusal("SessionNotReady"), f"{context}: {short(ack)}"
                return
            message = await self.socket.next_token()
        elif mode == "emit":
            await self.socket.sio.emit("getToken", wire_args(payload, extra))
            message = await self.socket.next_token()
        else:
            ack = await self.socket.call("getToken", wire_args(payload, extra))
            message = await self.socket.next_token()
            assert ack == message, f"{context}: the ack {short(ack)} is not the gotToken {short(message)}"
        check_token_message(message, context)
        assert expected is not None
        self.took_token(message, expected, presented, context)

    # -- any other event with more than one argument -------------------------------------------------

    async def extra_arguments(self, name: str, payload: Any, extra: tuple[Any, ...], context: str) -> None:
        ack = check_ack(await self.call(name, payload, extra), context)
        expected = self.model.expect_extra_arguments()
        assert ack == refusal(expected), f"{context}: expected {expected}, got {short(ack)}"

    # -- demo:set / demo:get ----------------------------------------------------------------------

    async def demo_set(self, payload: Any, context: str) -> None:
        model = self.model
        data = received(payload)
        expected = model.expect_set(data)
        ack = check_ack(await self.call("demo:set", payload), context)
        if expected != OK:
            assert ack == refusal(expected), f"{context}: expected {expected}, got {short(ack)}"
            return
        assert ack == {"ok": True}, f"{context}: {short(ack)}"
        key, value = data["key"], json.loads(json.dumps(data["value"]))
        model.current.data[key] = value
        # Invariant 6: durable, and read back as stored once the session is resumed from the store.
        assert model.token is not None
        answer = await self.call("getToken", {"token": model.token})
        message = check_token_message(await self.socket.next_token(), context)
        assert answer == message, f"{context}: the ack {short(answer)} is not the gotToken {short(message)}"
        self.took_token(message, "resumed", model.token, context)
        got = check_ack(await self.call("demo:get", {"key": key}), context, echo=("value",))
        accepted(got, {"value"}, context)
        assert canonical(got["value"]) == canonical(value), f"{context}: read back {short(got['value'])}"

    async def demo_get(self, payload: Any, context: str) -> None:
        data = received(payload)
        expected = self.model.expect_get(data)
        ack = check_ack(await self.call("demo:get", payload), context, echo=("value",))
        if expected != OK:
            assert ack == refusal(expected), f"{context}: {short(ack)}"
            return
        accepted(ack, {"value"}, context)
        want = self.model.current.data.get(data["key"], "")
        assert canonical(ack["value"]) == canonical(want), f"{context}: got {short(ack['value'])}"

    # -- user events ------------------------------------------------------------------------------

    async def login(self, payload: Any, context: str) -> None:
        expected, known = self.model.expect_login(received(payload))
        ack = check_ack(await self.call("user:login", payload), context)
        if expected != OK:
            assert ack == refusal(expected), f"{context}: expected {expected}, got {short(ack)}"
            return
        assert ack == {"ok": True}, f"{context}: {short(ack)}"
        self.moved(await self.socket.next_token(), "rotated", context, keep=known)

    async def secured(self, payload: Any, context: str) -> None:
        ack = check_ack(await self.call("user:securedEvent", payload), context, echo=("userId",))
        refused = self.model.guard("userId")
        if refused is not None:
            assert ack == refusal(refused), f"{context}: {short(ack)}"
            return
        accepted(ack, {"userId"}, context)
        want = self.model.current.data["userId"]
        assert canonical(ack["userId"]) == canonical(want), f"{context}: {short(ack)}"

    async def logout(self, payload: Any, context: str) -> None:
        expected = self.model.expect_logout()
        ack = check_ack(await self.call("user:logout", payload), context)
        if expected != OK:
            assert ack == refusal(expected), f"{context}: {short(ack)}"
            return
        assert ack == {"ok": True}, f"{context}: {short(ack)}"
        self.moved(await self.socket.next_token(), "created", context)

    async def list_sessions(self, payload: Any, context: str) -> None:
        model = self.model
        ack = check_ack(await self.call("user:sessions", payload), context)
        refused = model.guard()
        if refused is not None:
            assert ack == refusal(refused), f"{context}: {short(ack)}"
            return
        accepted(ack, {"sessions"}, context)
        assert isinstance(ack["sessions"], list), f"{context}: {short(ack)}"
        for entry in ack["sessions"]:
            assert isinstance(entry, dict), short(ack)
            assert set(entry) == {"id", "created", "lastSeen", "expires", "current"}, short(entry)
            assert isinstance(entry["id"], str), short(entry)
            assert len(entry["id"]) == 24, short(entry)
            assert type(entry["current"]) is bool, short(entry)
        ids = [entry["id"] for entry in ack["sessions"]]
        assert model.token is not None
        assert [e["id"] for e in ack["sessions"] if e["current"]] == [public_id(Token(model.token).digest)], short(ack)
        user = model.current.user
        assert model.owner_ids() <= set(ids), f"{context}: sessions of {user!r} missing from {short(ack)}"
        assert public_id(Token(model.bystander_token).digest) not in ids, f"{context}: lists the bystander"
        model.listed = ids

    async def end_session(self, payload: Any, context: str) -> None:
        model = self.model
        data = received(payload)
        ack = check_ack(await self.call("user:endSession", payload), context)
        expected = model.expect_end(data)
        if expected != OK:
            assert ack == refusal(expected), f"{context}: {short(ack)}"
            return
        accepted(ack, {"ended"}, context)
        target = data["id"]
        mine = model.owned(target)
        if mine:
            assert ack["ended"] == 1, f"{context}: {short(ack)}"
        elif target in model.listed:
            assert ack["ended"] in (0, 1), f"{context}: {short(ack)}"  # another test's session of this user
        else:
            assert ack["ended"] == 0, f"{context}: ended someone else's session: {short(ack)}"
        for token in mine:
            if token == model.token:  # the socket is told at once and handed a fresh session
                self.moved(await self.socket.next_token(), "not_found", context)
            else:
                model.end(token)

    # -- invariants 3, 4 and 5 --------------------------------------------------------------------

    async def check_rows(self, context: str) -> None:
        """Invariant 4: the socket's row holds what the model says, and ended sessions have no row."""
        model = self.model
        if model.token is not None:
            row = await self.store.fetch(Token(model.token).digest)
            assert row is not None, f"{context}: the socket's session has no row"
            assert canonical(dict(row.data)) == canonical(model.current.data), (
                f"{context}: the row holds {short(dict(row.data))}, expected {short(model.current.data)}"
            )
            assert row.user_id == model.current.user, f"{context}: owner {row.user_id!r}"
        for token in model.newly_dead:
            assert await self.store.fetch(Token(token).digest) is None, f"{context}: an ended session kept its row"
        model.newly_dead.clear()

    async def probe(self) -> None:
        """Invariant 3: the socket still sets and gets a value."""
        model = self.model
        if model.token is None or doc_size(model.current.data) > MAX_BYTES // 2:
            await self.new_session()
        self.probes += 1
        n = self.probes
        assert await self.socket.call("demo:set", {"key": "probe", "value": n}) == {"ok": True}, "probe: set"
        model.current.data["probe"] = n
        assert await self.socket.call("demo:get", {"key": "probe"}) == {"ok": True, "value": n}, "probe: get"
        assert self.socket.no_more_tokens()
        await self.check_rows("probe")

    async def check_bystander(self) -> None:
        """Invariant 4: the bystander's row is unchanged, and its socket was told nothing."""
        assert self.bystander is not None
        row = await self.store.fetch(Token(self.model.bystander_token).digest)
        assert row == self.bystander_row, "bystander changed"
        assert self.bystander.no_more_tokens(), f"the bystander was told {self.bystander.tokens.get_nowait()}"

    def check_log(self, context: str) -> None:
        """Invariant 5: nothing alarming in what the server logged since the last check."""
        with self.deployment.server.log_path.open("rb") as log:
            log.seek(self.log_offset)
            new = log.read()
        self.log_offset += len(new)
        text = new.decode(errors="replace")
        assert not alarms_in(text), f"{context}: the server logged:\n{text[-4000:]}"

    # -- bursts of concurrent events ----------------------------------------------------------------

    async def burst(self, actions: list[Action]) -> None:
        for action in actions:
            assume(wire_chars(action) <= WIRE_LIMIT)
        await self.prepare("new")
        payloads = [self.model.resolve(action.payload) for action in actions]
        answers = await asyncio.gather(
            *(
                self.socket.call(action.event, wire_args(payload, action.extra))
                for action, payload in zip(actions, payloads, strict=True)
            ),
            return_exceptions=True,
        )
        for action, payload, answer in zip(actions, payloads, answers, strict=True):
            context = f"burst: {action.event} {short(payload)}"
            assert not isinstance(answer, BaseException), f"{context}: no answer ({answer!r})"
            if action.event == "getToken":
                check_token_message(answer, context)
            else:
                ack = check_ack(answer, context, echo=("value", "userId"))
                assert ack.get("error") != "StoreUnavailable", f"{context}: the store is healthy"
        while not self.socket.no_more_tokens():
            check_token_message(self.socket.tokens.get_nowait(), "burst")
        assert self.socket.sio.connected, "the server dropped the socket during a burst"
        self.check_log(f"burst of {[a.event for a in actions]}")
        # Which session the socket ends on, and what the others hold, is up to the interleaving:
        # the model forgets them and starts over on a fresh session.
        self.model.forget()
        await self.new_session()
        await self.after_example()
