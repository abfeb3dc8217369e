"""The garbage-collector tuning the server applies after startup (SESSION_GC_TUNING)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from entrypoints.bootstrap import GC_THRESHOLDS, tune_gc
from entrypoints.settings import Settings


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_tuning_freezes_what_startup_left_and_collects_less_often(restored_gc: None) -> None:
    gc.unfreeze()
    tune_gc()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == GC_THRESHOLDS
    assert GC_THRESHOLDS[0] > 700  # Python's default for the young generation


def test_tuning_is_on_by_default_and_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().session_gc_tuning is True
    monkeypatch.setenv("SESSION_GC_TUNING", "0")
    assert Settings().session_gc_tuning is False
