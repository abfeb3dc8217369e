"""The plain HTTP side of the app: the demo page, its assets and the health check.

The page and its assets (``entrypoints/static``) ship inside the package and
are read through :mod:`importlib.resources`, so an installed wheel serves them
from site-packages whatever the working directory.

The demo page needs the Socket.IO browser client. No third-party code is kept
in this repository: the client is served from an installed npm package
(``socket.io-client``'s ``dist`` folder) at ``/vendor/socket.io.min.js`` when
one is found, and the page loads it from the Socket.IO CDN otherwise. The
folder is ``SOCKETIO_CLIENT_JS_DIR`` if set, else ``node_modules`` of this
checkout (``npm install socket.io-client``), else the copy the Node tests
install (``npm ci --prefix tests/e2e/node``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Ping = Callable[[], Awaitable[None]]
Details = Callable[[], Mapping[str, object]]

log = logging.getLogger("socketio_session.http")

STATIC: Traversable = files("entrypoints") / "static"
# Only meaningful in a checkout; installed, this is site-packages, the candidates below do not
# exist there, and the page falls back to the CDN (or to SOCKETIO_CLIENT_JS_DIR).
REPO = Path(__file__).resolve().parents[1]
CLIENT_JS_ENV = "SOCKETIO_CLIENT_JS_DIR"
CLIENT_JS_CANDIDATES = (
    REPO / "node_modules" / "socket.io-client" / "dist",
    REPO / "tests" / "e2e" / "node" / "node_modules" / "socket.io-client" / "dist",
)
CLIENT_JS_FILES = ("socket.io.min.js", "socket.io.min.js.map")

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".map": "application/json",
}

# The page runs its own script and the Socket.IO client (ours, or the CDN's as a fallback),
# talks to its own origin only (CSP 'self' covers same-origin ws:/wss: too), and cannot be framed.
_PAGE_POLICY = (
    "default-src 'none'; script-src 'self' https://cdn.socket.io; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def client_js_dir(environ: MutableMapping[str, str] | None = None) -> Path | None:
    """The folder holding ``socket.io.min.js``, or None (the page then uses the CDN)."""
    configured = (os.environ if environ is None else environ).get(CLIENT_JS_ENV, "")
    if configured:
        return Path(configured)
    return next((c for c in CLIENT_JS_CANDIDATES if (c / CLIENT_JS_FILES[0]).is_file()), None)


def _load_assets(static_dir: Traversable, client_dir: Path | None) -> dict[str, tuple[str, bytes]]:
    """Every file served besides ``/healthz``, by path, read once at startup."""
    assets: dict[str, tuple[str, bytes]] = {"/": (_TYPES[".html"], (static_dir / "index.html").read_bytes())}
    for resource in sorted(static_dir.iterdir(), key=lambda r: r.name):
        # A Traversable has a name but no suffix of its own.
        suffix = PurePosixPath(resource.name).suffix
        if resource.is_file() and suffix in _TYPES and resource.name != "index.html":
            assets[f"/static/{resource.name}"] = (_TYPES[suffix], resource.read_bytes())
    if client_dir is not None:
        for name in CLIENT_JS_FILES:
            if (client_dir / name).is_file():
                assets[f"/vendor/{name}"] = (_TYPES[Path(name).suffix], (client_dir / name).read_bytes())
    if "/vendor/socket.io.min.js" in assets:
        log.info("demo page: Socket.IO client served from %s", client_dir)
    else:
        where = f"not in {client_dir}" if client_dir is not None else "no socket.io-client package found"
        log.info("demo page: Socket.IO client from the CDN (%s; set %s)", where, CLIENT_JS_ENV)
    return assets


async def _respond(
    send: Send, status: int, content_type: str, body: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"cache-control", b"no-store"),
                (b"x-content-type-options", b"nosniff"),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def http_app(
    ping: Ping,
    store_kind: str,
    *,
    demo: bool = False,
    static_dir: Traversable = STATIC,
    client_dir: Path | None = None,
    details: Details | None = None,
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """``/healthz`` says whether the store answers; with ``demo``, ``/`` serves the demo page too.

    The demo page's assets are under ``/static/`` and ``/vendor/``. Without ``demo`` (the
    default) only ``/healthz`` is served and nothing is read: a production server exposes no
    page. ``static_dir`` is the page's folder (a package resource by default); ``client_dir`` is
    where ``socket.io.min.js`` is read from, by default :func:`client_js_dir`. ``details`` adds
    fields to the health check's answer after each ping (MySQL: the node in use, and whether it
    is a Galera node).
    """
    assets = _load_assets(static_dir, client_dir if client_dir is not None else client_js_dir()) if demo else {}
    page_headers = ((b"content-security-policy", _PAGE_POLICY.encode()), (b"referrer-policy", b"no-referrer"))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope.get("path", "/")
        if path == "/healthz":
            try:
                await ping()
            except Exception:
                down = {"status": "unavailable", "store": store_kind, **(details() if details else {})}
                await _respond(send, 503, "application/json", json.dumps(down).encode())
            else:
                ok = {"status": "ok", "store": store_kind, **(details() if details else {})}
                await _respond(send, 200, "application/json", json.dumps(ok).encode())
        elif path in assets:
            content_type, body = assets[path]
            await _respond(send, 200, content_type, body, page_headers if path == "/" else ())
        else:
            await _respond(send, 404, "text/plain; charset=utf-8", b"not found\n")

    return app
