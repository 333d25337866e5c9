"""The arbitered mode: training on Paillier ciphertexts, the arbiter holding the key. The
scheme and its arithmetic are in :mod:`consortium.vertical.encrypted`, its messages in
:mod:`consortium.vertical.messages`, the arbiter in :mod:`consortium.vertical.arbiter`, what
each role sees in :mod:`consortium.vertical.visibility`.

Before the alignment the master has the arbiter make the keys. After a training batch the
master waits until every member has stepped (``vfl.he.stepped``), so that the next batch's
outputs come from the updated weights.
"""

from __future__ import annotations

import functools
import operator
from typing import TypeGuard

import numpy as np

from consortium.errors import RunFailed
from consortium.privacy.paillier import (
    EncryptedArray,
    InvalidPublicKey,
    Mask,
    public_key_from_array,
)
from consortium.vertical.encrypted import (
    VALUE_LIMIT_BITS,
    Keyring,
    gradient_bound,
    output_bound,
    residual_bound,
    scaled_residual,
)
from consortium.vertical.exchange import Exchange, Expect, Outbox, positions
from consortium.vertical.local import Alignment, MasterPart
from consortium.vertical.messages import Kind, MemberStage
from consortium.vertical.modes import MODES, MasterMode, MemberMode, Mode
from consortium.vertical.parts import LinearBottom, LinearTop
from consortium.vertical.settings import VerticalSettings
from consortium.wire import Message

__all__ = ["ArbiteredMaster", "ArbiteredMember"]


def _positive_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class _Keyed:
    """What either side holds of the arbiter's key, once it has it."""

    settings: VerticalSettings
    keyring: Keyring | None = None

    @property
    def ring(self) -> Keyring:
        assert self.keyring is not None  # no step comes before the key
        return self.keyring

    def take_key(self, msg: Message) -> None:
        """The arbiter's public key (``vfl.he.public_key``), checked to be of the job's size."""
        bits = self.settings.paillier.key_bits
        try:
            key = public_key_from_array(msg.tensors.get("n"), min_bits=bits)
        except InvalidPublicKey as exc:
            raise RunFailed(f"{msg.kind} from {msg.sender}: {exc}") from None
        if key.bits != bits:
            raise RunFailed(
                f"{msg.kind} from {msg.sender}: a {key.bits}-bit key, the job asks for {bits} bits"
            )
        self.keyring = Keyring(key, self.settings.paillier)

    def encrypted(self, msg: Message, shape: tuple[int, ...], bound: int) -> EncryptedArray:
        """The ciphertexts ``enc`` of ``msg`` (at its ``exponent``), of this shape, whose
        values the protocol bounds by ``bound``."""
        enc, exponent = msg.tensors.get("enc"), msg.meta.get("exponent")
        return self.ring.from_wire(enc, exponent=exponent, shape=shape, bound=bound)

    def unmasked(self, secret: Mask, reply: Message, scale: int) -> np.ndarray:
        """The values behind the arbiter's reply to a masked decryption, divided by ``scale``."""
        if "error" in reply.meta:
            raise RunFailed(f"the arbiter refused to decrypt: {reply.meta['error']}")
        return self.ring.unmask(secret, reply.tensors.get("residues"), scale)

    def close(self) -> None:
        if self.keyring is not None:
            self.keyring.close()


class ArbiteredMember(_Keyed, MemberMode):
    """A member in arbitered mode: it holds the public key, sends its outputs encrypted and
    steps with its gradient, computed under encryption and masked for the arbiter."""

    arbiter: str  # the job's check requires an arbiter in arbitered mode
    _step: tuple[int, np.ndarray] | None = None  # (round, rows) of the last forward
    _secret: tuple[Mask, int, int] | None = None  # (mask, scale, round) of a step

    @property
    def ready(self) -> bool:
        return self.keyring is not None

    def handle(self, out: Outbox, msg: Message, stage: MemberStage) -> MemberStage:
        if msg.kind == Kind.PUBLIC_KEY:
            if self.keyring is not None:
                raise RunFailed(f"{out.name} got a second public key from {msg.sender}")
            self.take_key(msg)
        elif msg.kind == Kind.FORWARD:
            rows = positions(msg, "rows", self.part.n_train)
            values = self.part.bottom.forward(self.part.x[rows], train=True)
            self._step = (msg.round, rows)
            self._reply_encrypted(out, msg, Kind.HE_FORWARD_REPLY, values)
        elif msg.kind == Kind.RESIDUAL:
            return self._residual(out, msg)
        else:
            return self._decrypted(out, msg)
        return stage

    def reply_outputs(self, out: Outbox, request: Message, values: np.ndarray) -> None:
        self._reply_encrypted(out, request, Kind.HE_PREDICT_REPLY, values)

    def lost(self, out: Outbox, party: str) -> None:
        if party == self.arbiter and self.keyring is not None:
            raise RunFailed(f"{out.name} lost the arbiter {party}")

    def _reply_encrypted(self, out: Outbox, msg: Message, kind: str, values: np.ndarray) -> None:
        encrypted = self.ring.encrypt(values)
        tensors = {"enc": self.ring.to_wire(encrypted)}
        out.reply(msg, kind, tensors=tensors, meta={"exponent": encrypted.exponent})

    def _residual(self, out: Outbox, msg: Message) -> MemberStage:
        """``X_p^T [[s d]]``, masked, to the arbiter; then wait for its decryption."""
        part, ring = self.part, self.ring
        if self._step is None or msg.round != self._step[0]:
            raise RunFailed(f"{msg.kind} from {msg.sender} for a step this member did not run")
        scale = msg.meta.get("scale")
        if not _positive_int(scale):
            raise RunFailed(f"{msg.kind} from {msg.sender}: scale must be a positive integer")
        precision = ring.encoding.precision
        bits = msg.meta.get("bound_bits")
        if (
            not _positive_int(bits)
            or bits >= ring.public_key.bits
            or gradient_bound(bits, precision) > ring.public_key.max_int
        ):
            raise RunFailed(
                f"{msg.kind} from {msg.sender}: bound_bits must be a positive integer small "
                f"enough for the key's plaintexts, got {bits!r}"
            )
        rows = self._step[1]
        sd = self.encrypted(msg, (len(rows), part.width), bound=1 << bits)
        gradient = ring.gradient(part.x[rows], sd)
        wire, secret = ring.masked(gradient, bound=gradient_bound(bits, precision))
        out.send(Kind.DECRYPT, self.arbiter, round=msg.round, tensors={"enc": wire})
        self._secret = (secret, scale, msg.round)
        return MemberStage.DECRYPTING

    def _decrypted(self, out: Outbox, msg: Message) -> MemberStage:
        """Unmask the gradient, step, and tell the master."""
        part = self.part
        assert self._secret is not None
        secret, scale, step = self._secret
        if msg.round != step:
            raise RunFailed(f"{msg.kind} from {msg.sender} for step {msg.round}, not {step}")
        assert isinstance(part.bottom, LinearBottom)  # the arbitered mode trains linear models
        part.bottom.apply(self.unmasked(secret, msg, scale))
        self._secret = self._step = None
        out.send(Kind.STEPPED, self.hub, round=step)
        return MemberStage.READY


class ArbiteredMaster(_Keyed, MasterMode):
    """The master in arbitered mode; it holds the public key only."""

    arbiter: str  # the job's check requires an arbiter in arbitered mode

    @property
    def parties(self) -> int:
        """Parties whose outputs make ``z``: the members and the master (at least its intercept)."""
        return len(self.members) + 1

    def prepare(self, io: Exchange) -> None:
        """Ask the arbiter for keys; it sends the public key to the members too."""
        step = io.new_round()
        bits = self.settings.paillier.key_bits
        io.send(Kind.KEYS, self.arbiter, round=step, meta={"bits": bits})
        ((reply,),) = io.collect(step, Expect(Kind.PUBLIC_KEY, (self.arbiter,)))
        self.take_key(reply)

    def min_batch(self, alignment: Alignment) -> int:
        """A member learns its gradient ``X_p^T d`` in the clear; with no more rows than it
        has columns it could solve that for the rows' residuals, and so their labels.
        Batches are larger (a short last batch joins the one before it), or the run stops."""
        member, columns = max(sorted(alignment.features.items()), key=lambda item: item[1])
        size = self.settings.batch_size or alignment.n_train
        if min(size, alignment.n_train) <= columns:
            raise RunFailed(
                f"algorithm.batch_size: in arbitered mode a batch needs more rows than any "
                f"member has columns ({member} has {columns}); a smaller batch would let it "
                "solve its gradient for the batch's residuals, and so for the labels"
            )
        return columns + 1

    def train_step(self, io: Exchange, part: MasterPart, rows: np.ndarray) -> None:
        """One step; the master sees no loss (it never holds the training outputs)."""
        top = part.top
        assert isinstance(top, LinearTop)
        keyring = self.ring
        step = io.new_round()
        z = self._outputs(io, step, part, rows, Kind.FORWARD) + top.bias
        sd, scale = scaled_residual(z, part.y[rows], task=self.task, n_outputs=self.width)
        precision = keyring.encoding.precision
        # a public bound on |s d|, from the job alone, for every party's packing
        bound = residual_bound(self.task, self.width, self.parties, precision)
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
            io.send(Kind.RESIDUAL, member, round=step, tensors={"enc": wire}, meta=meta)
        block = np.ones((len(rows), 1))
        if part.own is not None:
            block = np.hstack([part.own.x[rows], block])
        bound = gradient_bound(bits, precision)
        gradient = self._decrypt(io, step, keyring.gradient(block, sd), scale, bound, stepped=True)
        if part.own is not None:
            assert isinstance(part.own.bottom, LinearBottom)
            part.own.bottom.apply(gradient[:-1])
        top.apply(gradient[-1])

    def predict(self, io: Exchange, part: MasterPart, rows: np.ndarray) -> np.ndarray:
        step = io.new_round()
        z = self._outputs(io, step, part, rows, Kind.PREDICT)
        bound = output_bound(self.parties, self.ring.encoding.precision)
        scores = self._decrypt(io, step, z, 1, bound, stepped=False)
        return part.top.predict([scores])

    def _outputs(
        self, io: Exchange, step: int, part: MasterPart, rows: np.ndarray, request: str
    ) -> EncryptedArray:
        """``[[sum_p X_p W_p]]`` for these rows: the members' encrypted outputs, asked for
        with ``request`` (``vfl.forward`` or ``vfl.predict``), plus the master's own."""
        reply = Kind.HE_FORWARD_REPLY if request == Kind.FORWARD else Kind.HE_PREDICT_REPLY
        for member in self.members:
            io.send(request, member, round=step, tensors={"rows": rows})

        def read(msg: Message) -> EncryptedArray:  # each member checks its own against the limit
            return self.encrypted(msg, (len(rows), self.width), bound=self.ring.limit)

        (outs,) = io.collect(step, Expect(reply, self.members, read))
        return functools.reduce(operator.add, [*outs, *part.outputs(rows, train=False)])

    def _decrypt(
        self,
        io: Exchange,
        step: int,
        values: EncryptedArray,
        scale: int,
        bound: int,
        *,
        stepped: bool,
    ) -> np.ndarray:
        """``values / scale`` through the arbiter, packed by the public ``bound`` and
        masked; with ``stepped``, also every member's ``vfl.he.stepped`` (which may come
        before the arbiter's reply)."""
        keyring = self.ring
        wire, secret = keyring.masked(values, bound=bound)
        io.send(Kind.DECRYPT, self.arbiter, round=step, tensors={"enc": wire})
        expects = [Expect(Kind.DECRYPT_REPLY, (self.arbiter,))]
        if stepped:
            expects.append(Expect(Kind.STEPPED, self.members))
        (reply,), *_ = io.collect(step, *expects)
        return self.unmasked(secret, reply, scale)


MODES.register("arbitered", Mode(master=ArbiteredMaster, member=ArbiteredMember))
