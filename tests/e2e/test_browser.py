"""The demo page in a real browser: headless Debian Chromium driven by Playwright.

Playwright never downloads a browser here: it launches ``/usr/bin/chromium``
(Debian's package; ``tests/support/ensure_chromium.sh`` installs it, ``make
test`` runs that). The page loads the Socket.IO client from the npm package
the Node tests install, served by the app (``SOCKETIO_CLIENT_JS_DIR``).

The test saves a screenshot to ``tests/artifacts/``; with
``UPDATE_SCREENSHOT=1`` the SQLite run also refreshes ``docs/screenshot.png``
(the README's picture), so an ordinary test run leaves the work tree clean.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from attrs import define, field
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, expect, sync_playwright

from domain.mailbox import Message
from domain.session import Session
from domain.token import Token
from tests.support.client import Client
from tests.support.deployment import Deployment, deploy
from tests.support.server import REPO

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
# As the machine notes say: no sandbox as root, no GPU, and none of Chromium's own network traffic.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CLIENT_DIST = REPO / "tests" / "e2e" / "node" / "node_modules" / "socket.io-client" / "dist"
ARTIFACTS = REPO / "tests" / "artifacts"
README_SCREENSHOT = REPO / "docs" / "screenshot.png"
WIDTH = 1000

T = TypeVar("T")


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from this synchronous test (Playwright's sync API holds the thread's event loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run tests/support/ensure_chromium.sh (`make test` does it)")
    if not (CLIENT_DIST / "socket.io.min.js").is_file():
        pytest.fail(f"{CLIENT_DIST} is missing: run `npm ci --prefix tests/e2e/node` (`make test` does it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(params=["sqlite", "mysql"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    for deployment in deploy(str(request.param), tmp_path, SOCKETIO_CLIENT_JS_DIR=str(CLIENT_DIST)):
        yield deployment
        # Captured output: pytest shows it when the test failed (the page only sees error names).
        print("server log (tail):\n" + "\n".join(deployment.server.log().splitlines()[-80:]))


@define
class DemoPage:
    """The demo page in one tab of a browser profile (context); tabs of one profile share localStorage."""

    context: BrowserContext
    url: str
    page: Page = field(init=False)
    problems: list[str] = field(factory=list)

    def __attrs_post_init__(self) -> None:
        self.page = self.context.new_page()
        # Closures, not bound methods: Playwright tags a bound method's object, and this class has slots.
        self.page.on("console", lambda message: self._console(message))
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        source = message.location.get("url", "")
        # A page without an icon link (the /healthz JSON) makes the browser ask for /favicon.ico: a 404.
        if message.type == "error" and not source.endswith("/favicon.ico"):
            self.problems.append(f"console {message.type}: {message.text} ({source})")

    def open(self) -> None:
        self.page.goto(self.url + "/")

    def reload(self) -> None:
        self.page.reload()

    def expect_session(self, status: str, visits: int) -> str:
        """The page shows ``status`` and ``visits``; the token it stored in localStorage."""
        expect(self.page.locator("#status")).to_have_text(status)
        expect(self.page.locator("#visits")).to_have_text(str(visits))
        return self.token()

    def token(self) -> str:
        stored = self.page.evaluate("() => localStorage.getItem('token')")
        assert isinstance(stored, str)
        assert len(stored) == 43
        return stored

    def log_in(self, user_id: str) -> None:
        self.page.fill("#user-id", user_id)
        self.page.click("#login")
        expect(self.page.locator("#user")).to_have_text(user_id)

    def expect_logged_out(self) -> None:
        expect(self.page.locator("#login-form")).to_be_visible()
        expect(self.page.locator("#sessions-card")).to_be_hidden()

    def session_rows(self, count: int) -> None:
        expect(self.page.locator("#sessions tr")).to_have_count(count)


def row(deployment: Deployment, token: str) -> Session | None:
    return _run(deployment.row(token))


def waiting(deployment: Deployment, token: str) -> list[Message]:
    """The messages in the mailbox of the session of ``token``, as the store holds them."""

    async def read() -> list[Message]:
        store = deployment.store()
        await store.open()
        try:
            return await store.pending(Token(token).digest, now=time.time())
        finally:
            await store.close()

    return _run(read())


def notify(deployment: Deployment, user_id: str, text: str) -> object:
    """``demo:notify`` from a python-socketio client of its own (no session); its acknowledgement."""

    async def send() -> object:
        async with Client(deployment.server.url) as client:
            return await client.call("demo:notify", {"userId": user_id, "text": text})

    return _run(send())


def iso_time(milliseconds: int) -> str:
    """What JavaScript's ``new Date(milliseconds).toISOString()`` says."""
    moment = datetime.fromtimestamp(milliseconds // 1000, UTC).replace(microsecond=milliseconds % 1000 * 1000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def profile(browser: Browser) -> BrowserContext:
    """A new browser profile: its own localStorage, like another device."""
    return browser.new_context(viewport={"width": WIDTH, "height": 800}, locale="en-US")


def test_the_demo_page_keeps_one_session_across_reloads_restarts_and_browsers(
    browser: Browser, served: Deployment
) -> None:
    kind, server = served.kind, served.server
    first = DemoPage(profile(browser), server.url)
    second = DemoPage(profile(browser), server.url)

    # A first visit: a new session, its token in localStorage, one visit counted.
    first.open()
    token = first.expect_session("created", 1)
    expect(first.page.locator("#connection")).to_have_text("connected")
    expect(first.page.locator("#client-source")).to_have_text("served by this server")
    expect(first.page.locator("#health")).to_have_text(f"{kind} (ok)")
    stored = row(served, token)
    assert stored is not None
    assert dict(stored.data) == {"visits": 1}

    # Reload: the same token, the counter went up.
    first.reload()
    assert first.expect_session("resumed", 2) == token

    # Restart the server process (same port): the open page reconnects by itself and resumes.
    server.restart()
    expect(first.page.locator("#events li")).to_have_count(2, timeout=20_000)
    expect(first.page.locator("#events li").first).to_contain_text("resumed")
    expect(first.page.locator("#connection")).to_have_text("connected")
    first.problems.clear()  # the browser reports the refused connections while the server was down
    first.reload()
    assert first.expect_session("resumed", 3) == token

    # A second browser profile given the same token is in the same session: the same counter.
    second.page.goto(server.url + "/healthz")  # same origin, to write its localStorage before the page loads
    second.page.evaluate("token => localStorage.setItem('token', token)", token)
    second.open()
    assert second.expect_session("resumed", 4) == token

    # Log in: the token is rotated and stored; the data stays; the old token is dead everywhere.
    first.log_in("alice")
    expect(first.page.locator("#status")).to_have_text("rotated")
    rotated = first.token()
    assert rotated != token
    assert row(served, token) is None
    rotated_row = row(served, rotated)
    assert rotated_row is not None
    assert rotated_row.user_id == "alice"
    assert dict(rotated_row.data) == {"visits": 4, "userId": "alice"}
    first.session_rows(1)
    # ... so the second profile, which still held it, is handed a fresh session at once.
    second.expect_session("not_found", 0)
    pushed = second.token()
    assert pushed not in (token, rotated)
    second.expect_logged_out()

    # A reload keeps the login and the rotated token (the page reads the session afresh).
    first.reload()
    assert first.expect_session("resumed", 5) == rotated
    expect(first.page.locator("#user")).to_have_text("alice")
    first.session_rows(1)

    # The second profile logs in as the same user: the first one lists two sessions.
    second.log_in("alice")
    expect(second.page.locator("#status")).to_have_text("rotated")
    first.page.click("#refresh-sessions")
    first.session_rows(2)
    expect(first.page.locator("#sessions tr.current")).to_have_count(1)
    expect(first.page.locator("#sessions tr.current")).to_contain_text("this browser")
    screenshot = first.page.screenshot(full_page=True)

    # End the other sessions: the second profile is pushed a fresh, logged-out session.
    second_token = second.token()
    first.page.click("#end-others")
    expect(first.page.locator("#notice")).to_have_text("Ended 1 other session.")
    first.session_rows(1)
    second.expect_session("not_found", 0)
    second.expect_logged_out()
    assert second.token() != second_token
    assert row(served, second_token) is None
    assert first.token() == rotated

    # Log out: a fresh, empty session and its token.
    first.page.click("#logout")
    first.expect_session("created", 0)
    first.expect_logged_out()
    fresh = first.token()
    assert fresh != rotated
    assert row(served, rotated) is None
    fresh_row = row(served, fresh)
    assert fresh_row is not None
    assert dict(fresh_row.data) == {}
    assert fresh_row.user_id is None

    assert first.problems == []
    assert second.problems == []
    assert "Traceback" not in server.log()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"browser-{kind}.png").write_bytes(screenshot)
    if os.environ.get("UPDATE_SCREENSHOT") == "1" and kind == "sqlite":
        README_SCREENSHOT.write_bytes(screenshot)
    first.context.close()
    second.context.close()


def test_tabs_of_one_browser_stay_in_one_session_through_login_and_logout(browser: Browser, served: Deployment) -> None:
    """Tabs share localStorage: the fresh session the server hands a tab whose token died must not
    overwrite the token another tab just stored (the page follows that tab instead)."""
    context = profile(browser)
    one, other = DemoPage(context, served.server.url), DemoPage(context, served.server.url)
    one.open()
    token = one.expect_session("created", 1)
    other.open()
    assert other.expect_session("resumed", 2) == token

    # Logging in in one tab kills the old token: the other tab follows into the logged-in session.
    one.log_in("bob")
    expect(one.page.locator("#status")).to_have_text("rotated")
    rotated = one.token()
    assert rotated != token
    expect(other.page.locator("#user")).to_have_text("bob")
    assert other.token() == rotated
    one.reload()
    assert one.expect_session("resumed", 3) == rotated
    expect(one.page.locator("#user")).to_have_text("bob")

    # Logging out in the other tab: both end up in its fresh session, logged out.
    other.page.click("#logout")
    fresh = other.expect_session("created", 0)
    assert fresh != rotated
    one.expect_logged_out()
    expect(one.page.locator("#visits")).to_have_text("0")
    assert one.token() == fresh
    one.reload()
    assert one.expect_session("resumed", 1) == fresh
    one.expect_logged_out()
    assert row(served, rotated) is None

    assert one.problems == []
    assert other.problems == []
    context.close()


def test_a_notice_waits_for_the_closed_page_and_is_not_shown_again_once_acknowledged(
    browser: Browser, served: Deployment
) -> None:
    """Closed page: the notice waits in the session's mailbox, and the reopened page lists it marked
    "waited" (meta.replayed); sent while the page is open: listed at once, unmarked. The page
    acknowledges each one it shows, so a reload brings neither back."""
    context = profile(browser)
    first = DemoPage(context, served.server.url)
    first.open()
    first.expect_session("created", 1)
    first.log_in("carol")
    expect(first.page.locator("#status")).to_have_text("rotated")
    token = first.token()
    expect(first.page.locator("#notices-empty")).to_be_visible()
    expect(first.page.locator("#notices li")).to_have_count(0)
    first.page.close()

    # Sent while no page holds the session: stored, for carol's one live session.
    assert notify(served, "carol", "sent while you were away") == {"ok": True, "queued": 1}
    [stored] = waiting(served, token)
    assert (stored.event, stored.payload) == ("notice", '{"text":"sent while you were away"}')

    # The page reopens in the same profile (same localStorage token): the notice is replayed.
    second = DemoPage(context, served.server.url)
    second.open()
    assert second.expect_session("resumed", 2) == token
    notices = second.page.locator("#notices li")
    expect(notices).to_have_count(1)
    replayed = notices.first
    expect(replayed.locator(".text")).to_have_text("sent while you were away")
    expect(replayed.locator("code")).to_have_text(f"#{stored.id}")
    expect(replayed.locator(".badge-waited")).to_have_text("waited")
    expect(replayed.locator("time")).to_have_attribute("datetime", iso_time(int(stored.sent_at * 1000)))
    expect(second.page.locator("#notices-empty")).to_be_hidden()

    # Sent from the page's own form while it is open: delivered live, without the mark.
    expect(second.page.locator("#notify-user")).to_have_value("carol")
    second.page.fill("#notify-text", "sent while you were here")
    second.page.click("#notify-send")
    expect(second.page.locator("#notify-result")).to_have_text("Queued for 1 session.")
    expect(notices).to_have_count(2)
    live = notices.first
    expect(live.locator(".text")).to_have_text("sent while you were here")
    expect(live.locator("code")).to_have_text(f"#{stored.id + 1}")
    expect(live.locator(".badge-waited")).to_have_count(0)
    expect(notices.nth(1).locator(".badge-waited")).to_have_count(1)

    # Both were acknowledged: the store lets them go (the acks are stored a moment after they arrive).
    deadline = time.monotonic() + 5
    while waiting(served, token) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert waiting(served, token) == []
    stored_row = row(served, token)
    assert stored_row is not None
    assert (stored_row.last_message, stored_row.waiting) == (stored.id + 1, 0)

    # So a reload brings neither back: the session says nothing waits, the page lists none.
    second.reload()
    assert second.expect_session("resumed", 3) == token
    expect(second.page.locator("#notices li")).to_have_count(0)
    expect(second.page.locator("#notices-empty")).to_be_visible()

    assert first.problems == []
    assert second.problems == []
    assert "Traceback" not in served.server.log()
    context.close()
