"""Checkpoints: what a driver needs to go on after its last finished round.

A driver that can resume saves its state after a round (:meth:`Checkpoints.save`): nested
mappings, lists and tuples of numpy arrays, numpy scalars and plain JSON values. The state is
written with :func:`consortium.npz.save_arrays` (atomic, no pickle) beside a JSON layout that
says how to rebuild it, the round it follows and the hash of the job that made it; a run
resumed from it (:meth:`Checkpoints.read`) gets the same values back, bit for bit, and a
checkpoint of another job is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from consortium.errors import ConfigError, ConsortiumError
from consortium.npz import load_arrays, save_arrays

__all__ = ["Checkpoints", "Snapshot"]

FORMAT = 1
_LAYOUT = "checkpoint.layout"  # the member holding the JSON layout


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A saved state: the round it follows and the state as the driver saved it."""

    round: int
    state: Any


@dataclass(slots=True)
class Checkpoints:
    """One party's checkpoint file, saved every ``every`` rounds (0: never) and after the
    last; ``resumed`` is the snapshot a resumed run starts from (None for a new run)."""

    path: Path
    job_hash: str
    every: int = 1
    resumed: Snapshot | None = None

    def due(self, round: int, *, last: bool) -> bool:
        return self.every > 0 and (last or round % self.every == 0)

    def save(self, round: int, state: Any) -> None:
        arrays: dict[str, np.ndarray] = {}
        layout = {
            "format": FORMAT,
            "job_hash": self.job_hash,
            "round": round,
            "state": _encode(state, arrays, "state"),
        }
        text = json.dumps(layout, allow_nan=True)
        save_arrays(self.path, {**arrays, _LAYOUT: np.frombuffer(text.encode(), np.uint8)})

    @staticmethod
    def read(path: Path, *, job_hash: str) -> Snapshot:
        """The snapshot in ``path``; ConfigError naming the file when there is none, it is
        not a checkpoint, or another job (a different hash) wrote it."""
        arrays = load_arrays(path)
        try:
            layout = json.loads(arrays.pop(_LAYOUT).tobytes().decode())
            version, saved_hash = layout["format"], layout["job_hash"]
            round_, encoded = int(layout["round"]), layout["state"]
        except (KeyError, TypeError, ValueError, UnicodeDecodeError):
            raise ConfigError(f"{path}: not a checkpoint") from None
        if version != FORMAT:
            raise ConfigError(f"{path}: checkpoint format {version}, this version reads {FORMAT}")
        if saved_hash != job_hash:
            raise ConfigError(
                f"{path}: the checkpoint is of another job (hash {str(saved_hash)[:12]}, this "
                f"job {job_hash[:12]}); resume with the job and overrides the run started with"
            )
        try:
            return Snapshot(round=round_, state=_decode(encoded, arrays))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}: the checkpoint is damaged") from None


def _encode(value: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ConsortiumError(f"checkpoint: {where} has a key {bad[0]!r} that is not a string")
        return {"map": {k: _encode(v, arrays, f"{where}.{k}") for k, v in value.items()}}
    if isinstance(value, np.ndarray | np.generic):
        name = f"a{len(arrays)}"
        arrays[name] = np.asarray(value)
        return {"array": name, "scalar": isinstance(value, np.generic)}
    if value is None or isinstance(value, bool | int | float | str):
        return {"json": value}
    if isinstance(value, list | tuple):
        items = [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]
        return {"list": items, "tuple": isinstance(value, tuple)}
    raise ConsortiumError(f"checkpoint: cannot save {where}, a {type(value).__name__}")


def _decode(node: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Any:
    if "map" in node:
        return {k: _decode(v, arrays) for k, v in node["map"].items()}
    if "array" in node:
        array = arrays[node["array"]]
        return array[()] if node["scalar"] else array
    if "json" in node:
        return node["json"]
    items = [_decode(v, arrays) for v in node["list"]]
    return tuple(items) if node["tuple"] else items
