"""The fuzz's fixtures: one server per store for the whole package, a fresh fuzzing socket per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.e2e.fuzz.model import MAX_BYTES
from tests.e2e.fuzz.wire import Wire
from tests.support.deployment import Deployment, deploy


@pytest.fixture(scope="package", params=["sqlite", "mysql"])
def fuzz_deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A server on the embedded store or on MariaDB, its ``getToken`` limit raised out of the fuzz's way."""
    kind = str(request.param)
    yield from deploy(
        kind,
        tmp_path_factory.mktemp(f"fuzz-{kind}"),
        SESSION_HANDSHAKE_LIMIT="100000",
        SESSION_MAX_BYTES=str(MAX_BYTES),
    )


@pytest.fixture
async def wire(fuzz_deployment: Deployment) -> AsyncIterator[Wire]:
    """The fuzzing socket, with a bystander session of its own; the test's invariants are checked at the end."""
    fuzzing = Wire(fuzz_deployment)
    await fuzzing.start()
    try:
        yield fuzzing
    finally:
        await fuzzing.finish()
