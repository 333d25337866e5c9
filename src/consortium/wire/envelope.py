"""The message envelope: who, what, which job and round, small metadata, named tensors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Message", "MetaValue"]

MetaValue = str | int | float | bool


@dataclass(frozen=True, slots=True)
class Message:
    """An immutable envelope. Tensors are numpy arrays; metadata holds scalars and strings.

    ``kind`` says what the message is (``"fit"``, ``"fit.reply"``, ...). ``seq`` is the
    sender's per-receiver sequence number, set by the runtime.
    """

    kind: str
    sender: str
    receiver: str
    job: str = ""
    round: int = 0
    seq: int = 0
    meta: Mapping[str, MetaValue] = field(default_factory=dict)
    tensors: Mapping[str, np.ndarray] = field(default_factory=dict)

    def reply(
        self,
        kind: str,
        *,
        meta: Mapping[str, MetaValue] | None = None,
        tensors: Mapping[str, np.ndarray] | None = None,
    ) -> Message:
        """A message back to this one's sender, for the same job and round."""
        return Message(
            kind=kind,
            sender=self.receiver,
            receiver=self.sender,
            job=self.job,
            round=self.round,
            meta=dict(meta or {}),
            tensors=dict(tensors or {}),
        )
