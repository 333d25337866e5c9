"""The master's program (the hub's driver): join, align, train or solve, evaluate, finish.

Training is synchronous and explicit: for every batch the master names the aligned rows
(``vfl.forward``), waits for every member's output (quorum: all of them, with the round
deadline), steps the top, and sends each member the gradient w.r.t. its own output
(``vfl.backward``). A member's messages arrive in the order sent, so the next forward finds
its bottom already stepped. After each epoch the master predicts the held-out aligned records
the same way, without training (``vfl.predict``): this is also how a trained model serves
new records (``algorithm.task: predict``). In arbitered mode the numbers travel encrypted
and the master steps through :class:`~consortium.vertical.arbitered.EncryptedSteps`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from consortium.errors import RunFailed, TransportClosed
from consortium.runtime import JOIN, PROGRAMS, STOP, Outcome, PartyContext, derive_seed, gather
from consortium.tracking import RoundRecord
from consortium.vertical.align import (
    EPOCH_KEY,
    Alignment,
    align_as_master,
    batches,
    fit_standardizer,
)
from consortium.vertical.arbitered import EncryptedSteps
from consortium.vertical.data import VerticalData
from consortium.vertical.exact import CglsBlock, cgls
from consortium.vertical.member import NET_KEY, load_part, part_path, save_part
from consortium.vertical.messages import Kind
from consortium.vertical.parts import Bottom, LinearBottom, LinearTop, Top, score
from consortium.vertical.settings import VerticalSettings
from consortium.wire import Message

__all__ = ["TOP_KEY", "Master"]

log = logging.getLogger(__name__)

TOP_KEY = 0x70B  # seeds the master's top network: derive_seed(seed, TOP_KEY)


class Master:
    """Holds the labels (and maybe columns), the top of the model, and the schedule."""

    def __init__(self, ctx: PartyContext) -> None:
        self.settings: VerticalSettings = ctx.settings
        self.data: VerticalData = ctx.data
        if self.data.y is None:
            raise RunFailed(f"the master {ctx.name} holds no labels")
        self.members: list[str] = []
        self._step = 0
        self._x: np.ndarray | None = None
        self._y = np.zeros(0)
        self._mean = self._scale = np.zeros(0)
        self._own: Bottom | None = None
        self._top: Top | None = None
        self._he: EncryptedSteps | None = None

    # -- the run -------------------------------------------------------------------------

    def run(self, ctx: PartyContext) -> Outcome:
        self.members = ctx.peers("member")
        everyone = [*self.members, *ctx.peers("arbiter")]
        gather(
            ctx,
            expected=everyone,
            kind=JOIN,
            round=0,
            timeout=self.settings.join_timeout,
            quorum=len(everyone),
            on_reply=lambda msg: None,
        )
        try:
            outcome = self._run(ctx)
        finally:
            if self._he is not None:
                self._he.close()
            for party in everyone:
                with contextlib.suppress(TransportClosed):
                    ctx.send(STOP, party)
        return outcome

    def _run(self, ctx: PartyContext) -> Outcome:
        settings, data = self.settings, self.data
        model = data.model
        width = model.kind.width(model.args, task=data.task, n_classes=data.n_classes)
        predict = settings.task == "predict"
        if settings.mode == "arbitered":
            self._he = EncryptedSteps(
                settings,
                members=self.members,
                arbiter=ctx.peers("arbiter")[0],
                task=data.task,
                n_outputs=width,
            )
            self._step += 1
            self._he.keys(ctx, self._step)
        alignment = align_as_master(
            ctx,
            self.members,
            ids=data.ids,
            test_fraction=data.test_fraction,
            width=width,
            settings=settings,
            predict=predict,
        )
        self._setup(ctx, alignment, width)
        if predict:
            rows = np.arange(len(alignment.rows))
            scores = self._predict(ctx, rows)
            metrics = score(scores, self._y, data.task)
            self._finish(ctx)
            return Outcome(
                metrics=metrics,
                rounds_completed=0,
                model={"rows": alignment.rows, "scores": scores},
            )
        if settings.solver == "exact":
            metrics = self._solve(ctx, alignment)
            rounds = 1
        else:
            metrics = self._train(ctx, alignment)
            rounds = settings.rounds
        part = self._finish(ctx)
        return Outcome(metrics=metrics, rounds_completed=rounds, model=part)

    def _setup(self, ctx: PartyContext, alignment: Alignment, width: int) -> None:
        data, model = self.data, self.data.model
        assert data.y is not None
        self._y = data.y[alignment.rows]
        path = part_path(self.settings, ctx.name)
        saved = load_part(path) if self.settings.task == "predict" and path else {}
        if data.x is not None:
            x = data.x[alignment.rows].astype(np.float64)
            if saved:
                self._mean, self._scale = saved["mean"], saved["scale"]
            elif data.standardize:
                self._mean, self._scale = fit_standardizer(x[: alignment.n_train])
            else:
                self._mean, self._scale = np.zeros(x.shape[1]), np.ones(x.shape[1])
            self._x = (x - self._mean) / self._scale
            self._own = model.kind.bottom(
                model.args,
                n_features=data.n_features,
                image_shape=data.image_shape,
                width=width,
                settings=self.settings,
                seed=derive_seed(ctx.seed, NET_KEY, ctx.party.rank),
            )
        parts = len(self.members) + (self._own is not None)
        self._top = model.kind.top(
            model.args,
            widths=[width] * parts,
            task=data.task,
            n_classes=data.n_classes,
            settings=self.settings,
            seed=derive_seed(ctx.seed, TOP_KEY),
        )
        if saved:
            self._top.load(_unprefix(saved, "top."))
            if self._own is not None:
                self._own.load(_unprefix(saved, "bottom."))

    # -- gradient training ---------------------------------------------------------------

    def _train(self, ctx: PartyContext, alignment: Alignment) -> dict[str, float]:
        assert self._top is not None
        settings = self.settings
        test = np.arange(alignment.n_train, len(alignment.rows))
        metrics: dict[str, float] = {}
        min_size = self._min_batch(alignment)
        for epoch in range(1, settings.rounds + 1):
            started = ctx.clock.now()
            rng = ctx.rng(EPOCH_KEY, epoch) if settings.shuffle else None
            total = 0.0
            for rows in batches(alignment.n_train, settings.batch_size, rng, min_size=min_size):
                total += self._train_step(ctx, rows) * len(rows)
            # In arbitered mode the master never sees the outputs of the training rows.
            metrics = {} if self._he is not None else {"train_loss": total / alignment.n_train}
            if len(test):
                metrics.update(score(self._predict(ctx, test), self._y[test], self.data.task))
            if ctx.tracker is not None:
                ctx.tracker.round(
                    RoundRecord(
                        round=epoch,
                        metrics=metrics,
                        party_metrics={},
                        participants=tuple(self.members),
                        failures={},
                        duration_s=ctx.clock.now() - started,
                    )
                )
        return metrics

    def _min_batch(self, alignment: Alignment) -> int:
        """The fewest rows a batch may have. In arbitered mode a member learns its gradient
        ``X_p^T d`` in the clear; with no more rows than it has columns it could solve that
        for the rows' residuals, and so their labels. Batches are larger (a short last batch
        joins the one before it), or the run stops."""
        if self._he is None or not alignment.features:
            return 1
        member, columns = max(sorted(alignment.features.items()), key=lambda item: item[1])
        size = self.settings.batch_size or alignment.n_train
        if min(size, alignment.n_train) <= columns:
            raise RunFailed(
                f"algorithm.batch_size: in arbitered mode a batch needs more rows than any "
                f"member has columns ({member} has {columns}); a smaller batch would let it "
                "solve its gradient for the batch's residuals, and so for the labels"
            )
        return columns + 1

    def _train_step(self, ctx: PartyContext, rows: np.ndarray) -> float:
        assert self._top is not None
        self._step += 1
        if self._he is not None:
            own_x = None if self._own is None else self._own_x(rows)
            self._he.train_step(
                ctx, self._step, rows, own=self._own, own_x=own_x, top=self._top, y=self._y[rows]
            )
            return 0.0
        for member in self.members:
            ctx.send(Kind.FORWARD, member, round=self._step, tensors={"rows": rows})
        own = [] if self._own is None else [self._own.forward(self._own_x(rows), train=True)]
        outs = self._collect(ctx, Kind.FORWARD_REPLY, len(rows))
        loss, grads = self._top.step([*own, *outs], self._y[rows])
        for member, grad in zip(self.members, grads[len(own) :], strict=True):
            ctx.send(Kind.BACKWARD, member, round=self._step, tensors={"grad": grad})
        if self._own is not None:
            self._own.backward(grads[0])
        return loss

    def _predict(self, ctx: PartyContext, rows: np.ndarray) -> np.ndarray:
        assert self._top is not None
        self._step += 1
        if self._he is not None:
            own_x = None if self._own is None else self._own_x(rows)
            return self._he.predict(
                ctx, self._step, rows, own=self._own, own_x=own_x, top=self._top
            )
        for member in self.members:
            ctx.send(Kind.PREDICT, member, round=self._step, tensors={"rows": rows})
        own = [] if self._own is None else [self._own.forward(self._own_x(rows), train=False)]
        return self._top.predict([*own, *self._collect(ctx, Kind.PREDICT_REPLY, len(rows))])

    def _own_x(self, rows: np.ndarray) -> np.ndarray:
        assert self._x is not None
        return self._x[rows]

    def _collect(self, ctx: PartyContext, kind: str, rows: int) -> list[np.ndarray]:
        """Every member's ``out`` for this step, in member order."""
        outs: dict[str, np.ndarray] = {}

        def on_reply(msg: Message) -> str | None:
            out = np.asarray(msg.tensors.get("out", np.zeros(0)))
            if out.ndim != 2 or out.shape[0] != rows or not np.all(np.isfinite(out)):
                return f"out must be a finite ({rows}, width) array, got shape {out.shape}"
            outs[msg.sender] = out
            return None

        self._gather(ctx, kind, on_reply)
        return [outs[m] for m in self.members]

    def _gather(self, ctx: PartyContext, kind: str, on_reply: Any) -> None:
        gather(
            ctx,
            expected=self.members,
            kind=kind,
            round=self._step,
            timeout=self.settings.round_timeout,
            quorum=len(self.members),
            on_reply=on_reply,
        )

    # -- the exact solver ----------------------------------------------------------------

    def _solve(self, ctx: PartyContext, alignment: Alignment) -> dict[str, float]:
        assert isinstance(self._top, LinearTop)
        n = alignment.n_train
        own_x = np.ones((n, 1))
        weight = np.zeros(1)
        if self._x is not None:
            own_x = np.hstack([self._x[:n], own_x])
            weight = np.zeros(self._x.shape[1] + 1)
        penalised = np.ones(own_x.shape[1])
        penalised[-1] = 0.0  # the intercept
        block = CglsBlock(x=own_x, weight=weight, penalised=penalised, lam=self.settings.l2 * n)

        def residual(alpha: float, r: np.ndarray) -> float:
            self._step += 1
            for member in self.members:
                ctx.send(
                    Kind.EXACT_RESIDUAL,
                    member,
                    round=self._step,
                    tensors={"alpha": np.array(alpha), "r": r},
                )
            total = block.residual(alpha, r)
            return total + sum(
                float(t["gamma"]) for t in self._scalars(ctx, Kind.EXACT_RESIDUAL_REPLY, ("gamma",))
            )

        def direction(beta: float) -> tuple[np.ndarray, float]:
            self._step += 1
            for member in self.members:
                ctx.send(
                    Kind.EXACT_DIRECTION,
                    member,
                    round=self._step,
                    tensors={"beta": np.array(beta)},
                )
            q, penalty = block.direction(beta)
            for reply in self._scalars(ctx, Kind.EXACT_DIRECTION_REPLY, ("penalty",), q=n):
                q = q + reply["q"]
                penalty += float(reply["penalty"])
            return q, penalty

        unknowns = own_x.shape[1] + sum(alignment.features.values())
        steps = cgls(
            self._y[:n].astype(np.float64),
            residual=residual,
            direction=direction,
            tolerance=self.settings.exact_tolerance,
            max_steps=10 * unknowns + 20,
        )
        if isinstance(self._own, LinearBottom):
            self._own.weight[:, 0] = weight[:-1]
        self._top.bias[0] = weight[-1]
        metrics = {"steps": float(steps)}
        test = np.arange(n, len(alignment.rows))
        if len(test):
            metrics.update(score(self._predict(ctx, test), self._y[test], self.data.task))
        if ctx.tracker is not None:
            ctx.tracker.round(
                RoundRecord(
                    round=1,
                    metrics=metrics,
                    party_metrics={},
                    participants=tuple(self.members),
                    failures={},
                    duration_s=0.0,
                )
            )
        return metrics

    def _scalars(
        self, ctx: PartyContext, kind: str, names: Sequence[str], q: int | None = None
    ) -> list[dict[str, np.ndarray]]:
        replies: dict[str, dict[str, np.ndarray]] = {}

        def on_reply(msg: Message) -> str | None:
            got = {k: np.asarray(v, dtype=np.float64) for k, v in msg.tensors.items()}
            for name in names:
                if name not in got or got[name].shape != () or not np.isfinite(got[name]):
                    return f"{name} must be a finite number"
            if q is not None and ("q" not in got or got["q"].shape != (q,)):
                return f"q must have shape ({q},)"
            replies[msg.sender] = got
            return None

        self._gather(ctx, kind, on_reply)
        return [replies[m] for m in self.members]

    # -- the end -------------------------------------------------------------------------

    def _finish(self, ctx: PartyContext) -> dict[str, np.ndarray]:
        """Every member saves its own part; the master saves (and returns) its own."""
        assert self._top is not None
        self._step += 1
        for member in self.members:
            ctx.send(Kind.FINISH, member, round=self._step)
        self._gather(ctx, Kind.FINISH_REPLY, lambda msg: None)
        part = {f"top.{k}": v for k, v in self._top.state().items()}
        if self._own is not None:
            part.update({f"bottom.{k}": v for k, v in self._own.state().items()})
            part.update({"mean": self._mean, "scale": self._scale})
        path = part_path(self.settings, ctx.name)
        if path is not None and self.settings.task == "train":
            save_part(path, part)
        return part


def _unprefix(saved: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in saved.items() if k.startswith(prefix)}


PROGRAMS.register("vertical/master", Master)
