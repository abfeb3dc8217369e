"""End-to-end fixtures: a real uvicorn process on the embedded store and on MariaDB."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.deployment import Deployment, deploy


@pytest.fixture(scope="module", params=["sqlite", "mysql"])
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    yield from deploy(str(request.param), tmp_path_factory.mktemp(f"e2e-{request.param}"), SESSION_MAX_BYTES="4096")
