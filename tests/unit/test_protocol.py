"""The transport-free protocol: gotToken messages, error names, the handshake limiter."""

from __future__ import annotations

import re

import pytest

from adapters.socketio.transport import client_address
from adapters.stores.memory import MemoryStore
from application.errors import SchemaMissing, StoreUnavailable
from application.handle import SessionHandle
from application.protocol import (
    CLIENT_ERRORS,
    ERROR_NAMES,
    NOT_A_TOKEN,
    HandshakeLimiter,
    answer_handshake,
    error_reply,
    internal_error_reply,
    presented_token,
)
from application.sessions import Sessions
from domain.errors import SessionError
from tests.support.fakes import FakeClock
from tests.support.server import REPO


def test_every_client_error_name_is_a_session_error_class_name() -> None:
    assert all(issubclass(error, SessionError) for error in CLIENT_ERRORS)
    assert len(set(ERROR_NAMES)) == len(ERROR_NAMES)
    assert error_reply(CLIENT_ERRORS[0]("some text the client never sees")) == {"ok": False, "error": "InvalidKey"}
    assert internal_error_reply() == {"ok": False, "error": "InternalError"}


@pytest.mark.parametrize(
    ("payload", "presented"),
    [
        ({"token": "abc"}, "abc"),
        ({"token": ""}, ""),
        ({}, ""),
        ({"token": None}, NOT_A_TOKEN),
        ("abc", NOT_A_TOKEN),
        (None, NOT_A_TOKEN),
        ([{"token": "abc"}], NOT_A_TOKEN),
    ],
)
def test_the_presented_token_of_a_payload(payload: object, presented: object) -> None:
    assert presented_token(payload) == presented


def test_the_limiter_counts_per_key_within_a_sliding_window() -> None:
    clock = FakeClock(0.0)
    limiter = HandshakeLimiter(2, 10, now=clock.now)
    assert limiter.allow("a")
    assert limiter.allow("a")
    assert not limiter.allow("a")  # a refusal is not counted ...
    assert limiter.allow("b")  # ... and other keys are not affected
    clock.advance(10)
    assert limiter.allow("a")  # the window slid past the first two
    limiter.forget("a")
    assert limiter.allow("a")
    assert limiter.allow("a")


async def test_answer_handshake_is_a_got_token_message_and_limits_without_writing() -> None:
    store = MemoryStore()
    sessions = Sessions(store, FakeClock())
    limiter = HandshakeLimiter(1, 60, now=FakeClock().now)
    handle = SessionHandle(sessions)
    created = await answer_handshake(handle, "", limiter=limiter, key="socket-1")
    assert set(created) == {"token", "errors", "status", "expires"}
    assert (created["errors"], created["status"]) == ("", "created")
    limited = await answer_handshake(SessionHandle(sessions), "", limiter=limiter, key="socket-1")
    assert limited == {"token": "", "errors": "Too Many Requests", "status": "rate_limited"}
    assert len(store.sessions) == 1


class _DownStore(MemoryStore):
    async def insert(self, digest: bytes, session: object) -> None:
        raise StoreUnavailable("down")


async def test_an_unreachable_store_is_the_unavailable_message() -> None:
    handle = SessionHandle(Sessions(_DownStore(), FakeClock()))
    assert await answer_handshake(handle, "") == {
        "token": "",
        "errors": "Session Store Unavailable",
        "status": "unavailable",
    }


def test_the_documented_error_names_are_exactly_the_ones_clients_can_receive() -> None:
    page = (REPO / "docs" / "embedding.md").read_text(encoding="utf-8")
    section = page.split("## Error names", 1)[1]
    documented = re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE)
    assert sorted(documented) == sorted(ERROR_NAMES)


def test_a_table_gone_while_serving_reaches_clients_as_the_store_being_unavailable() -> None:
    assert error_reply(SchemaMissing("table `t` does not exist ...")) == {"ok": False, "error": "StoreUnavailable"}


def test_the_client_address_is_the_peer_from_the_asgi_scope_not_engineios_environ() -> None:
    environ = {"REMOTE_ADDR": "127.0.0.1", "asgi.scope": {"client": ("203.0.113.7", 51000)}}
    assert client_address(environ) == "203.0.113.7"
    forwarded = {**environ, "HTTP_X_FORWARDED_FOR": "198.51.100.1, 10.0.0.1"}
    assert client_address(forwarded) == "203.0.113.7"  # the header counts only behind a trusted proxy
    assert client_address(forwarded, trust_proxy=True) == "198.51.100.1"
    junk = {**environ, "HTTP_X_FORWARDED_FOR": "x" * 5000}
    assert client_address(junk, trust_proxy=True) == "203.0.113.7"  # not an address: the peer counts
    v6 = {"asgi.scope": {"client": ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 1)}}
    assert client_address(v6) == "2001:db8:1:2::/64"  # one client's /64 is one address


def test_the_address_limiter_forgets_addresses_once_their_window_is_over() -> None:
    clock = FakeClock(0.0)
    limiter = HandshakeLimiter(1, 10, now=clock.now)
    for n in range(1000):
        assert limiter.allow(f"10.0.{n // 256}.{n % 256}")
    assert len(limiter) == 1000
    clock.advance(10)
    assert limiter.allow("10.9.9.9")
    assert len(limiter) == 1
