"""The HTTP side: the demo page and its assets, the Socket.IO client from an npm package, the health check."""

from __future__ import annotations

import json
import sys
import zipfile
from collections.abc import MutableMapping
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from entrypoints import http
from entrypoints.http import CLIENT_JS_ENV, client_js_dir, http_app


async def _ok() -> None:
    return None


async def _down() -> None:
    raise OSError("connection refused")


async def get(app: Any, path: str) -> tuple[int, dict[str, str], bytes]:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "method": "GET", "path": path}, receive, send)
    start, body = sent
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return int(start["status"]), headers, bytes(body["body"])


@pytest.fixture
def client_dir(tmp_path: Path) -> Path:
    (tmp_path / "socket.io.min.js").write_text("/* the npm package's client */")
    return tmp_path


async def test_the_page_and_its_assets_are_served_with_their_types(client_dir: Path) -> None:
    app = http_app(_ok, "sqlite", demo=True, client_dir=client_dir)
    status, headers, body = await get(app, "/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self' https://cdn.socket.io" in headers["content-security-policy"]
    assert b'<script src="/static/app.js"' in body
    status, headers, _ = await get(app, "/static/app.js")
    assert (status, headers["content-type"]) == (200, "text/javascript; charset=utf-8")
    status, headers, _ = await get(app, "/static/app.css")
    assert (status, headers["content-type"]) == (200, "text/css; charset=utf-8")
    assert headers["x-content-type-options"] == "nosniff"


async def test_the_socketio_client_comes_from_the_configured_folder(client_dir: Path) -> None:
    app = http_app(_ok, "sqlite", demo=True, client_dir=client_dir)
    assert await get(app, "/vendor/socket.io.min.js") == (
        200,
        {
            "content-type": "text/javascript; charset=utf-8",
            "cache-control": "no-store",
            "x-content-type-options": "nosniff",
        },
        b"/* the npm package's client */",
    )
    assert (await get(app, "/vendor/socket.io.min.js.map"))[0] == 404  # not in that folder


async def test_without_a_client_the_vendor_path_is_not_found_and_the_page_uses_the_cdn(tmp_path: Path) -> None:
    app = http_app(_ok, "sqlite", demo=True, client_dir=tmp_path)
    assert (await get(app, "/vendor/socket.io.min.js"))[0] == 404
    assert b"https://cdn.socket.io/" in (await get(app, "/static/app.js"))[2]


def test_the_client_folder_is_the_setting_else_an_installed_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client_js_dir({CLIENT_JS_ENV: str(tmp_path)}) == tmp_path
    missing = tmp_path / "none"
    monkeypatch.setattr(http, "CLIENT_JS_CANDIDATES", (missing, tmp_path))
    assert client_js_dir({}) is None
    (tmp_path / "socket.io.min.js").write_text("")
    assert client_js_dir({}) == tmp_path


@pytest.mark.parametrize("path", ["/static/../http.py", "/static/index.html", "/vendor/../asgi.py", "/nothing"])
async def test_other_paths_are_not_found(client_dir: Path, path: str) -> None:
    app = http_app(_ok, "mysql", demo=True, client_dir=client_dir)
    assert (await get(app, path))[:1] == (404,)


async def test_health_is_200_or_503_with_a_short_json_body(client_dir: Path) -> None:
    status, headers, body = await get(http_app(_ok, "mysql", client_dir=client_dir), "/healthz")
    assert (status, headers["content-type"], json.loads(body)) == (
        200,
        "application/json",
        {"status": "ok", "store": "mysql"},
    )
    status, headers, body = await get(http_app(_down, "mysql", client_dir=client_dir), "/healthz")
    assert (status, json.loads(body)) == (503, {"status": "unavailable", "store": "mysql"})
    assert b"refused" not in body  # no exception text


async def test_without_the_demo_only_the_health_check_is_served(client_dir: Path) -> None:
    app = http_app(_ok, "sqlite", client_dir=client_dir)  # the demo is off unless asked for
    for path in ("/", "/static/app.js", "/static/app.css", "/vendor/socket.io.min.js"):
        assert (await get(app, path))[0] == 404, path
    assert (await get(app, "/healthz"))[0] == 200


async def test_the_page_is_read_as_a_package_resource_not_from_a_file_path(tmp_path: Path, client_dir: Path) -> None:
    # A package inside a zip archive has no directory on disk: serving its page shows that the
    # assets are read through importlib.resources, as they are from an installed wheel.
    archive = tmp_path / "zipped_demo.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("zipped_demo/__init__.py", "")
        zipped.writestr("zipped_demo/static/index.html", "<p>zipped page</p>")
        zipped.writestr("zipped_demo/static/app.js", "/* zipped script */")
        zipped.writestr("zipped_demo/static/notes.txt", "not an asset type")
    sys.path.insert(0, str(archive))
    try:
        app = http_app(_ok, "sqlite", demo=True, static_dir=files("zipped_demo") / "static", client_dir=client_dir)
    finally:
        sys.path.remove(str(archive))
        sys.modules.pop("zipped_demo", None)
    assert (await get(app, "/"))[::2] == (200, b"<p>zipped page</p>")
    assert (await get(app, "/static/app.js"))[::2] == (200, b"/* zipped script */")
    assert (await get(app, "/static/notes.txt"))[0] == 404
