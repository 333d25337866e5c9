"""The master's side of the arbitered mode: keys, an encrypted training step, an encrypted
prediction (the arithmetic is in :mod:`consortium.vertical.encrypted`).

For a training batch the master

1. names the rows (``vfl.forward``) and collects every member's ``[[X_p W_p]]``;
2. adds them and its own plaintext part ``X_0 W_0 + b`` into ``[[z]]``, forms the scaled
   gradient ``[[s d]]`` with the labels, re-randomises it and sends it to every member
   (``vfl.he.residual``);
3. computes its own ``[X_0 1]^T [[s d]]``, masks it and has the arbiter decrypt it; unmasks,
   divides by ``s`` and steps its weights and intercept;
4. waits until every member has stepped (``vfl.he.stepped``), so that the next batch's
   outputs come from the updated weights.

The master never holds ``z``, a member's output or a member's gradient in the clear during
training; to score held-out rows it has the arbiter decrypt the masked outputs, so it learns
the outputs of the rows it predicts for (the point of predicting), and nothing else.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable

import numpy as np

from consortium.errors import RunFailed
from consortium.ml.datasets import Task
from consortium.privacy.paillier import EncryptedArray, InvalidPublicKey, public_key_from_array
from consortium.runtime import PartyContext, gather
from consortium.vertical.encrypted import (
    VALUE_LIMIT_BITS,
    Keyring,
    gradient_bound,
    output_bound,
    residual_bound,
    scaled_residual,
)
from consortium.vertical.messages import Kind
from consortium.vertical.parts import Bottom, LinearBottom, LinearTop, Top
from consortium.vertical.settings import VerticalSettings
from consortium.wire import Message

__all__ = ["EncryptedSteps", "receive_public_key"]


def receive_public_key(msg: Message, settings: VerticalSettings) -> Keyring:
    """The arbiter's public key from ``vfl.he.public_key``, checked to be of the job's size."""
    try:
        key = public_key_from_array(msg.tensors.get("n"), min_bits=settings.paillier.key_bits)
    except InvalidPublicKey as exc:
        raise RunFailed(f"{msg.kind} from {msg.sender}: {exc}") from None
    if key.bits != settings.paillier.key_bits:
        raise RunFailed(
            f"{msg.kind} from {msg.sender}: a {key.bits}-bit key, the job asks for "
            f"{settings.paillier.key_bits} bits"
        )
    return Keyring(key, settings.paillier)


class EncryptedSteps:
    """What the master does differently in arbitered mode; it holds the public key only."""

    def __init__(
        self,
        settings: VerticalSettings,
        *,
        members: list[str],
        arbiter: str,
        task: Task,
        n_outputs: int,
    ) -> None:
        self.settings = settings
        self.members = members
        self.arbiter = arbiter
        self.task: Task = task
        self.n_outputs = n_outputs
        self._keyring: Keyring | None = None

    def close(self) -> None:
        if self._keyring is not None:
            self._keyring.close()

    def keys(self, ctx: PartyContext, step: int) -> None:
        """Ask the arbiter for keys; it sends the public key to the members too."""
        bits = self.settings.paillier.key_bits
        ctx.send(Kind.KEYS, self.arbiter, round=step, meta={"bits": bits})
        got: list[Message] = []
        self._wait(ctx, Kind.PUBLIC_KEY, step, got.append)
        self._keyring = receive_public_key(got[0], self.settings)

    @property
    def parties(self) -> int:
        """Parties whose outputs make ``z``: the members and the master (its columns, or at
        least its intercept)."""
        return len(self.members) + 1

    @property
    def keyring(self) -> Keyring:
        if self._keyring is None:
            raise RuntimeError("no public key yet")
        return self._keyring

    # -- training ------------------------------------------------------------------------

    def train_step(
        self,
        ctx: PartyContext,
        step: int,
        rows: np.ndarray,
        *,
        own: Bottom | None,
        own_x: np.ndarray | None,
        top: Top,
        y: np.ndarray,
    ) -> None:
        assert isinstance(top, LinearTop)
        keyring = self.keyring
        z = self._outputs(ctx, step, rows, Kind.FORWARD, own, own_x) + top.bias
        sd, scale = scaled_residual(z, y, task=self.task, n_outputs=self.n_outputs)
        precision = keyring.encoding.precision
        # a public bound on |s d|, from the job alone, for every party's packing
        bound = residual_bound(self.task, self.n_outputs, self.parties, precision)
        bits = bound.bit_length()
        if sd.bound is None or sd.bound > bound:
            raise RunFailed(
                f"the master's partial outputs (with the intercept) or targets exceed "
                f"2^{VALUE_LIMIT_BITS} in magnitude, beyond the arbitered protocol's public "
                "limit: scale the data"
            )
        wire = keyring.to_wire(sd)
        meta = {"exponent": sd.exponent, "scale": scale, "bound_bits": bits}
        for member in self.members:
            ctx.send(Kind.RESIDUAL, member, round=step, tensors={"enc": wire}, meta=meta)
        block = np.ones((len(rows), 1))
        if own_x is not None:
            block = np.hstack([own_x, block])
        gradient = self._decrypt(
            ctx,
            step,
            keyring.gradient(block, sd),
            scale,
            bound=gradient_bound(bits, precision),
            wait_stepped=True,
        )
        if own is not None:
            assert isinstance(own, LinearBottom)
            own.apply(gradient[:-1])
        top.apply(gradient[-1])

    # -- prediction ----------------------------------------------------------------------

    def predict(
        self,
        ctx: PartyContext,
        step: int,
        rows: np.ndarray,
        *,
        own: Bottom | None,
        own_x: np.ndarray | None,
        top: Top,
    ) -> np.ndarray:
        z = self._outputs(ctx, step, rows, Kind.PREDICT, own, own_x)
        bound = output_bound(self.parties, self.keyring.encoding.precision)
        return top.predict([self._decrypt(ctx, step, z, 1, bound=bound, wait_stepped=False)])

    # -- the parts -----------------------------------------------------------------------

    def _outputs(
        self,
        ctx: PartyContext,
        step: int,
        rows: np.ndarray,
        request: str,
        own: Bottom | None,
        own_x: np.ndarray | None,
    ) -> EncryptedArray:
        """``[[sum_p X_p W_p]]`` for these rows: the members' encrypted outputs, asked for
        with ``request`` (``vfl.forward`` or ``vfl.predict``), plus the master's own."""
        keyring, outs = self.keyring, {}
        reply = Kind.HE_FORWARD_REPLY if request == Kind.FORWARD else Kind.HE_PREDICT_REPLY
        for member in self.members:
            ctx.send(request, member, round=step, tensors={"rows": rows})

        def on_reply(msg: Message) -> str | None:
            try:
                outs[msg.sender] = keyring.from_wire(
                    msg.tensors.get("enc"),
                    exponent=msg.meta.get("exponent"),
                    shape=(len(rows), self.n_outputs),
                    bound=keyring.limit,  # each member checks its own against it
                )
            except RunFailed as exc:
                return str(exc)
            return None

        gather(
            ctx,
            expected=self.members,
            kind=reply,
            round=step,
            timeout=self.settings.round_timeout,
            quorum=len(self.members),
            on_reply=on_reply,
        )
        total = functools.reduce(operator.add, (outs[m] for m in self.members))
        if own is None or own_x is None:
            return total
        return total + own.forward(own_x, train=False)

    def _decrypt(
        self,
        ctx: PartyContext,
        step: int,
        values: EncryptedArray,
        scale: int,
        *,
        bound: int,
        wait_stepped: bool,
    ) -> np.ndarray:
        """``values / scale`` through the arbiter, packed by the public ``bound`` and
        masked; with ``wait_stepped``, also wait for every member's ``vfl.he.stepped``
        (which may come before the arbiter's reply)."""
        keyring = self.keyring
        wire, secret = keyring.masked(values, bound=bound)
        ctx.send(Kind.DECRYPT, self.arbiter, round=step, tensors={"enc": wire})
        stepped: set[str] = set()

        def on_other(msg: Message) -> None:
            if msg.kind == Kind.STEPPED and msg.round == step and msg.sender in self.members:
                stepped.add(msg.sender)

        got: list[Message] = []
        self._wait(ctx, Kind.DECRYPT_REPLY, step, got.append, on_other=on_other)
        reply = got[0]
        if "error" in reply.meta:
            raise RunFailed(f"the arbiter refused to decrypt: {reply.meta['error']}")
        out = keyring.unmask(secret, reply.tensors.get("residues"), scale)
        if wait_stepped:
            waiting = [m for m in self.members if m not in stepped]
            gather(
                ctx,
                expected=waiting,
                kind=Kind.STEPPED,
                round=step,
                timeout=self.settings.round_timeout,
                quorum=len(waiting),
                on_reply=lambda msg: None,
            )
        return out

    def _wait(
        self,
        ctx: PartyContext,
        kind: str,
        step: int,
        keep: Callable[[Message], None],
        on_other: Callable[[Message], None] | None = None,
    ) -> None:
        """The arbiter's one reply of ``kind`` for this step, handed to ``keep``."""

        def on_reply(msg: Message) -> None:
            keep(msg)

        gather(
            ctx,
            expected=[self.arbiter],
            kind=kind,
            round=step,
            timeout=self.settings.round_timeout,
            quorum=1,
            on_reply=on_reply,
            on_other=on_other,
        )
