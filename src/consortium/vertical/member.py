"""The member's program (an actor) and the arbiter's.

A member answers the master's requests one at a time, in the order of
:class:`~consortium.vertical.messages.MemberStage`: the intersection offer, the aligned
positions, then forward, backward, predict and exact-solver requests for the rows each names,
and finally the request to save its part. A request that does not fit the stage, or rows
outside the aligned records, is a protocol error: the member fails and the run fails naming
it.

In arbitered mode it also takes the arbiter's public key, sends its outputs encrypted, and
steps with the gradient it computes under encryption from the master's ``[[s d]]``, masked
before the arbiter decrypts it (see :mod:`consortium.vertical.encrypted`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from consortium.errors import RunFailed
from consortium.privacy.paillier import Mask
from consortium.privacy.psi import PsiSender
from consortium.runtime import JOIN, PROGRAMS, STOP, PartyContext, derive_seed
from consortium.transport import PEER_LOST
from consortium.vertical.align import fit_standardizer
from consortium.vertical.arbitered import receive_public_key
from consortium.vertical.data import VerticalData
from consortium.vertical.encrypted import Keyring, gradient_bound
from consortium.vertical.exact import CglsBlock
from consortium.vertical.messages import ACCEPTS, FROM_ARBITER, Kind, MemberStage
from consortium.vertical.parts import Bottom, LinearBottom
from consortium.vertical.settings import VerticalSettings
from consortium.wire import Message

__all__ = ["NET_KEY", "Member", "load_part", "part_path", "save_part"]

log = logging.getLogger(__name__)

NET_KEY = 0xB0770  # seeds each party's bottom network: derive_seed(seed, NET_KEY, rank)


def part_path(settings: VerticalSettings, party: str) -> Path | None:
    """Where ``party`` keeps its part of the model (None when the job saves none)."""
    if settings.parts_dir is None:
        return None
    return Path(settings.parts_dir.replace("{party}", party)) / f"{party}.npz"


def save_part(path: Path, arrays: dict[str, np.ndarray]) -> None:
    from consortium.tracking import save_model

    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(path, arrays)


def load_part(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except OSError as exc:
        raise RunFailed(f"cannot load the saved part {path}: {exc}") from None


def positions(msg: Message, name: str, limit: int) -> np.ndarray:
    """Aligned positions from a request, checked to lie in ``[0, limit)``."""
    rows = np.asarray(msg.tensors.get(name, np.zeros(0)))
    if rows.ndim != 1 or rows.dtype.kind not in "iu" or len(rows) == 0:
        raise RunFailed(f"{msg.kind} from {msg.sender}: {name} must be a 1-D integer array")
    if rows.min() < 0 or rows.max() >= limit:
        raise RunFailed(f"{msg.kind} from {msg.sender}: {name} outside the {limit} rows allowed")
    return rows.astype(np.int64)


def scalar(msg: Message, name: str) -> float:
    value = np.asarray(msg.tensors.get(name, np.float64("nan")), dtype=np.float64)
    if value.shape != () or not np.isfinite(value):
        raise RunFailed(f"{msg.kind} from {msg.sender}: {name} must be a finite number")
    return float(value)


class Member:
    """Holds some columns of the aligned records and its bottom of the model."""

    def __init__(self, ctx: PartyContext) -> None:
        self.settings: VerticalSettings = ctx.settings
        self.data: VerticalData = ctx.data
        self.stage = MemberStage.OFFER
        self.hub = ctx.topology.hub
        self._psi: PsiSender | None = None
        self._x = np.zeros((0, 0))
        self._mean = self._scale = np.zeros(0)
        self._n_train = 0
        self._bottom: Bottom | None = None
        self._step: tuple[int, int] | None = None  # (round, rows) of the last training forward
        self._rows = np.zeros(0, dtype=np.int64)  # and its rows
        self._block: CglsBlock | None = None
        arbiters = ctx.peers("arbiter")
        self.arbiter = arbiters[0] if arbiters else None
        self.accepts = ACCEPTS[self.settings.mode]
        self._keyring: Keyring | None = None
        self._ready: Message | None = None  # the alignment, answered once the key is here
        self._width = 0
        self._secret: tuple[Mask, int, int] | None = None  # (mask, scale, round) of a step
        self._handlers: dict[str, Callable[[PartyContext, Message], None]] = {
            Kind.PSI_OFFER: self._offer,
            Kind.ALIGN: self._align,
            Kind.FORWARD: self._forward,
            Kind.BACKWARD: self._backward,
            Kind.PREDICT: self._predict,
            Kind.EXACT_RESIDUAL: self._exact_residual,
            Kind.EXACT_DIRECTION: self._exact_direction,
            Kind.FINISH: self._finish,
            Kind.PUBLIC_KEY: self._public_key,
            Kind.RESIDUAL: self._residual,
            Kind.DECRYPT_REPLY: self._decrypted,
        }

    def start(self, ctx: PartyContext) -> None:
        if self.data.x is None:
            raise RunFailed(f"member {ctx.name} holds no feature columns")
        ctx.send(JOIN, self.hub)

    def handle(self, ctx: PartyContext, msg: Message) -> bool:
        if msg.kind == STOP or (msg.kind == PEER_LOST and msg.sender == self.hub):
            self._close()
            return False
        if msg.kind == PEER_LOST and msg.sender == self.arbiter and self._keyring is not None:
            raise RunFailed(f"{ctx.name} lost the arbiter {msg.sender}")
        if msg.sender != (self.arbiter if msg.kind in FROM_ARBITER else self.hub):
            log.debug("%s ignored %s from %s", ctx.name, msg.kind, msg.sender)
            return True
        if msg.kind not in self.accepts[self.stage]:
            raise RunFailed(f"{ctx.name} got {msg.kind} while {self.stage.value}")
        self._handlers[msg.kind](ctx, msg)
        return True

    def _offer(self, ctx: PartyContext, msg: Message) -> None:
        self._psi = PsiSender(self.data.ids, domain=ctx.job_id)
        reblinded = self._psi.reblind(msg.tensors["points"])
        ctx.reply(msg, Kind.PSI_REPLY, tensors={"ids": self._psi.blinded(), "points": reblinded})
        self.stage = MemberStage.ALIGN

    def _align(self, ctx: PartyContext, msg: Message) -> None:
        assert self._psi is not None and self.data.x is not None
        rows = self._psi.rows(msg.tensors["positions"])
        n_train, width = msg.meta.get("train"), msg.meta.get("width")
        if not isinstance(n_train, int) or not isinstance(width, int) or width < 1:
            raise RunFailed(f"{msg.kind} from {msg.sender}: train and width must be integers")
        self._n_train = n_train
        x = self.data.x[rows]
        model = self.data.model
        self._bottom = model.kind.bottom(
            model.args,
            n_features=self.data.n_features,
            image_shape=self.data.image_shape,
            width=width,
            settings=self.settings,
            seed=derive_seed(ctx.seed, NET_KEY, ctx.party.rank),
        )
        path = part_path(self.settings, ctx.name)
        if self.settings.task == "predict":
            assert path is not None
            saved = load_part(path)
            self._mean, self._scale = saved.pop("mean"), saved.pop("scale")
            self._bottom.load(saved)
        elif self.data.standardize:
            self._mean, self._scale = fit_standardizer(x[:n_train])
        else:
            self._mean, self._scale = np.zeros(x.shape[1]), np.ones(x.shape[1])
        self._x = (x.astype(np.float64) - self._mean) / self._scale
        self._width = width
        self._ready = msg
        self.stage = MemberStage.KEY
        self._answer_ready(ctx)

    def _answer_ready(self, ctx: PartyContext) -> None:
        """Tell the master this member is aligned (in arbitered mode: and holds the key)."""
        if self._ready is None or (self.settings.mode == "arbitered" and self._keyring is None):
            return
        ctx.reply(self._ready, Kind.READY, meta={"features": self.data.n_features})
        self._ready = None
        self.stage = MemberStage.READY

    def _public_key(self, ctx: PartyContext, msg: Message) -> None:
        if self._keyring is not None:
            raise RunFailed(f"{ctx.name} got a second public key from {msg.sender}")
        self._keyring = receive_public_key(msg, self.settings)
        self._answer_ready(ctx)

    def _forward(self, ctx: PartyContext, msg: Message) -> None:
        assert self._bottom is not None
        rows = positions(msg, "rows", self._n_train)
        out = self._bottom.forward(self._x[rows], train=True)
        self._step = (msg.round, len(rows))
        if self._keyring is None:
            ctx.reply(msg, Kind.FORWARD_REPLY, tensors={"out": out})
        else:
            self._rows = rows
            self._reply_encrypted(ctx, msg, Kind.HE_FORWARD_REPLY, out)

    def _reply_encrypted(self, ctx: PartyContext, msg: Message, kind: str, out: np.ndarray) -> None:
        assert self._keyring is not None
        encrypted = self._keyring.encrypt(out)
        ctx.reply(
            msg,
            kind,
            tensors={"enc": self._keyring.to_wire(encrypted)},
            meta={"exponent": encrypted.exponent},
        )

    def _residual(self, ctx: PartyContext, msg: Message) -> None:
        """``X_p^T [[s d]]``, masked, to the arbiter."""
        assert self._keyring is not None and self.arbiter is not None
        if self._step is None or msg.round != self._step[0]:
            raise RunFailed(f"{msg.kind} from {msg.sender} for a step this member did not run")
        scale = msg.meta.get("scale")
        if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
            raise RunFailed(f"{msg.kind} from {msg.sender}: scale must be a positive integer")
        ring = self._keyring
        precision = ring.encoding.precision
        bits = msg.meta.get("bound_bits")
        if (
            not isinstance(bits, int)
            or isinstance(bits, bool)
            or not 0 < bits < ring.public_key.bits
            or gradient_bound(bits, precision) > ring.public_key.max_int
        ):
            raise RunFailed(
                f"{msg.kind} from {msg.sender}: bound_bits must be a positive integer small "
                f"enough for the key's plaintexts, got {bits!r}"
            )
        sd = ring.from_wire(
            msg.tensors.get("enc"),
            exponent=msg.meta.get("exponent"),
            shape=(self._step[1], self._width),
            bound=1 << bits,
        )
        gradient = ring.gradient(self._x[self._rows], sd)
        wire, secret = ring.masked(gradient, bound=gradient_bound(bits, precision))
        ctx.send(Kind.DECRYPT, self.arbiter, round=msg.round, tensors={"enc": wire})
        self._secret = (secret, scale, msg.round)
        self.stage = MemberStage.DECRYPTING

    def _decrypted(self, ctx: PartyContext, msg: Message) -> None:
        assert self._keyring is not None and self._secret is not None
        secret, scale, step = self._secret
        if msg.round != step:
            raise RunFailed(f"{msg.kind} from {msg.sender} for step {msg.round}, not {step}")
        if "error" in msg.meta:
            raise RunFailed(f"the arbiter refused to decrypt: {msg.meta['error']}")
        if not isinstance(self._bottom, LinearBottom):
            raise RunFailed("the arbitered mode trains linear models only")
        self._bottom.apply(self._keyring.unmask(secret, msg.tensors.get("residues"), scale))
        self._secret = self._step = None
        self.stage = MemberStage.READY
        ctx.send(Kind.STEPPED, self.hub, round=step)

    def _backward(self, ctx: PartyContext, msg: Message) -> None:
        assert self._bottom is not None
        grad = np.asarray(msg.tensors.get("grad", np.zeros(0)))
        if self._step is None or msg.round != self._step[0]:
            raise RunFailed(f"{msg.kind} from {msg.sender} for a step this member did not run")
        if grad.ndim != 2 or grad.shape[0] != self._step[1] or not np.all(np.isfinite(grad)):
            raise RunFailed(f"{msg.kind} from {msg.sender}: grad has shape {grad.shape}")
        try:
            self._bottom.backward(grad)
        except ValueError as exc:
            raise RunFailed(f"{msg.kind} from {msg.sender}: {exc}") from None
        self._step = None

    def _predict(self, ctx: PartyContext, msg: Message) -> None:
        assert self._bottom is not None
        rows = positions(msg, "rows", len(self._x))
        out = self._bottom.forward(self._x[rows], train=False)
        if self._keyring is None:
            ctx.reply(msg, Kind.PREDICT_REPLY, tensors={"out": out})
        else:
            self._reply_encrypted(ctx, msg, Kind.HE_PREDICT_REPLY, out)

    def _exact_block(self) -> CglsBlock:
        if self._block is None:
            if not isinstance(self._bottom, LinearBottom):
                raise RunFailed("the exact solver needs a linear model")
            self._block = CglsBlock(
                x=self._x[: self._n_train],
                weight=self._bottom.weight[:, 0],
                penalised=np.ones(self._x.shape[1]),
                lam=self.settings.l2 * self._n_train,
            )
        return self._block

    def _exact_residual(self, ctx: PartyContext, msg: Message) -> None:
        r = np.asarray(msg.tensors.get("r", np.zeros(0)), dtype=np.float64)
        if r.shape != (self._n_train,):
            raise RunFailed(f"{msg.kind} from {msg.sender}: r has shape {r.shape}")
        gamma = self._exact_block().residual(scalar(msg, "alpha"), r)
        ctx.reply(msg, Kind.EXACT_RESIDUAL_REPLY, tensors={"gamma": np.array(gamma)})

    def _exact_direction(self, ctx: PartyContext, msg: Message) -> None:
        q, penalty = self._exact_block().direction(scalar(msg, "beta"))
        tensors = {"q": q, "penalty": np.array(penalty)}
        ctx.reply(msg, Kind.EXACT_DIRECTION_REPLY, tensors=tensors)

    def _finish(self, ctx: PartyContext, msg: Message) -> None:
        assert self._bottom is not None
        path = part_path(self.settings, ctx.name)
        if path is not None and self.settings.task == "train":
            save_part(path, {"mean": self._mean, "scale": self._scale, **self._bottom.state()})
        ctx.reply(msg, Kind.FINISH_REPLY, meta={"saved": "" if path is None else str(path)})
        self.stage = MemberStage.DONE

    def _close(self) -> None:
        if self._keyring is not None:
            self._keyring.close()


PROGRAMS.register("vertical/member", Member)
