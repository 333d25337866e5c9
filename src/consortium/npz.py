"""Named numeric arrays in a ``.npz`` file, written atomically, read without pickle.

The one file format for what a run keeps: the model (``model.npz``), each party's part of a
vertical model, and checkpoints. A file is written beside its final name and renamed over it
after an ``fsync``, so a reader (or a run resumed after ``kill -9``) sees the old file or the
new one, never half of one. ``np.load(path, allow_pickle=False)`` reads it too.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from consortium.errors import ConfigError, ConsortiumError

__all__ = ["load_arrays", "replacing", "save_arrays"]


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; when the block ends without error it is
    flushed to disk and replaces ``path``, otherwise it is removed, so ``path`` is never seen
    half written."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable, where allowed
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def save_arrays(path: Path, arrays: Mapping[str, Any]) -> None:
    """Save named arrays member by member (``np.savez(file, **arrays)`` refuses an array
    named ``file`` and would pickle object arrays); object arrays are refused."""
    with replacing(Path(path)) as temporary, zipfile.ZipFile(temporary, "w") as archive:
        for name, value in arrays.items():
            if not isinstance(name, str) or not name:
                raise ConsortiumError(f"array names must be non-empty strings, got {name!r}")
            array = np.asarray(value)
            if array.dtype.hasobject:
                raise ConsortiumError(
                    f"array {name!r} has dtype {array.dtype}; only numeric arrays are saved "
                    "(never pickled objects)"
                )
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of a file :func:`save_arrays` wrote; ConfigError naming the file when it
    is missing or not such a file."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{path}: not a file of named arrays: {exc}") from None
