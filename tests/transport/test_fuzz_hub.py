"""A short run of fuzz/fuzz_hub.py: hostile frames against a live hub, no crash."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[2] / "fuzz" / "fuzz_hub.py"


@pytest.mark.slow
def test_a_few_thousand_hostile_frames_crash_nothing():
    spec = importlib.util.spec_from_file_location("fuzz_hub", _SCRIPT)
    assert spec is not None and spec.loader is not None
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    played, statuses, crashes, _ = fuzz.run(frames=3000, seed=1, workers=2)
    assert played >= 3000 and crashes == 0, statuses
    assert "INVALID_ARGUMENT" in statuses
