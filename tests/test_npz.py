"""Named arrays on disk: exact round trips, atomic replacement, no pickles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from consortium.errors import ConfigError, ConsortiumError
from consortium.npz import load_arrays, replacing, save_arrays


def test_arrays_come_back_exactly_under_any_name(tmp_path: Path) -> None:
    arrays = {
        "file": np.arange(6, dtype=np.float32).reshape(2, 3),  # np.savez refuses this name
        "layer.0/bias": np.array([np.nextafter(1.0, 2.0)]),
        "steps": np.array(7, dtype=np.int64),
        "mask": np.array([True, False]),
    }
    save_arrays(tmp_path / "m.npz", arrays)
    back = load_arrays(tmp_path / "m.npz")
    assert list(back) == list(arrays)
    for name, array in arrays.items():
        assert back[name].dtype == array.dtype and back[name].shape == array.shape
        np.testing.assert_array_equal(back[name], array)


def test_object_arrays_are_refused_and_nothing_is_left(tmp_path: Path) -> None:
    with pytest.raises(ConsortiumError, match="never pickled"):
        save_arrays(tmp_path / "model.npz", {"w": np.array([{"a": 1}], dtype=object)})
    assert not list(tmp_path.iterdir())


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "state.npz"
    save_arrays(path, {"w": np.ones(3)})
    with pytest.raises(ConsortiumError):
        save_arrays(path, {"w": np.zeros(3), "bad": np.array([object()], dtype=object)})
    np.testing.assert_array_equal(load_arrays(path)["w"], np.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["state.npz"]


def test_replacing_publishes_only_a_finished_file(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    with replacing(path) as temporary:
        temporary.write_text("new")
        assert not path.exists()
    assert path.read_text() == "new"


@pytest.mark.parametrize("content", [None, b"not a zip"], ids=["missing", "garbage"])
def test_a_missing_or_foreign_file_is_named(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "model.npz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"^{path}: "):
        load_arrays(path)
