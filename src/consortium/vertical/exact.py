"""The exact least-squares (ridge) solver, without pooling features: CGLS, conjugate gradients
on the normal equations ``(X^T X + lam D) w = X^T y`` (Hestenes and Stiefel (1952), "Methods
of Conjugate Gradients for Solving Linear Systems", J. Res. NBS 49; Bjorck (1996),
"Numerical Methods for Least Squares Problems", SIAM, section 7.4). In exact arithmetic it
ends in at most as many steps as there are unknowns, with the closed-form solution.

The unknowns split by column blocks, one per party: each keeps its weights ``w_p``, search
direction ``p_p`` and gradient ``s_p = X_p^T r - lam D_p w_p`` to itself. The master holds the
residual ``r`` (it starts as ``y``) and the scalars. ``D`` is 1 on every weight and 0 on the
intercept, which the master's block carries as a column of ones, so the intercept is not
penalised (as in scikit-learn's ``Ridge``).

Per step the master sends the residual ``r`` (label-derived, as honest gradient training's
gradients are); a member takes its step and returns ``|s_p|^2`` (``vfl.exact.residual``),
then ``X_p p_p`` (a partial output) and ``lam |D_p p_p|^2`` (``vfl.exact.direction``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import numpy as np

from consortium.errors import RunFailed
from consortium.vertical.exchange import Exchange, Expect, Outbox, scalar
from consortium.vertical.local import Alignment, MasterPart, MemberPart
from consortium.vertical.messages import Kind, MemberStage
from consortium.vertical.modes import MODES, EpochRng, MasterMode, MemberMode, Mode
from consortium.vertical.parts import LinearBottom, LinearTop
from consortium.wire import Message

__all__ = ["CglsBlock", "ExactMaster", "ExactMember", "cgls"]


class CglsBlock:
    """One party's block of the unknowns; ``weight`` is updated in place."""

    def __init__(
        self, *, x: np.ndarray, weight: np.ndarray, penalised: np.ndarray, lam: float
    ) -> None:
        self.x = np.asarray(x, dtype=np.float64)
        self.w = weight  # a view into the party's model, shape (columns,)
        self.d = np.asarray(penalised, dtype=np.float64)
        self.lam = float(lam)
        self.p = np.zeros_like(self.w)
        self.s = np.zeros_like(self.w)

    def residual(self, alpha: float, r: np.ndarray) -> float:
        """Take the step ``w += alpha p``; then the new gradient block and its squared norm."""
        self.w += alpha * self.p
        self.s = self.x.T @ r - self.lam * self.d * self.w
        return float(self.s @ self.s)

    def direction(self, beta: float) -> tuple[np.ndarray, float]:
        """The new direction ``p = s + beta p``; returns ``X_p p_p`` and ``lam |D_p p_p|^2``."""
        self.p = self.s + beta * self.p
        dp = self.d * self.p
        return self.x @ self.p, self.lam * float(dp @ dp)


def cgls(
    y: np.ndarray,
    *,
    residual: Callable[[float, np.ndarray], float],
    direction: Callable[[float], tuple[np.ndarray, float]],
    tolerance: float,
    max_steps: int,
) -> int:
    """Run CGLS over all blocks: ``residual(alpha, r)`` and ``direction(beta)`` apply the
    step to every block and return the sums. Returns the number of steps taken."""
    r = np.array(y, dtype=np.float64)
    gamma = residual(0.0, r)
    start = gamma
    if start == 0.0:
        return 0
    beta = 0.0
    for step in range(1, max_steps + 1):
        q, penalty = direction(beta)
        delta = float(q @ q) + penalty
        if delta == 0.0:
            return step - 1
        alpha = gamma / delta
        r = r - alpha * q  # a new array: the old one may still be in flight
        fresh = residual(alpha, r)
        if np.sqrt(fresh) <= tolerance * np.sqrt(start):
            return step
        beta, gamma = fresh / gamma, fresh
    return max_steps


class ExactMember(MemberMode):
    """A member in the exact mode: its block of the unknowns over its training rows."""

    def aligned(self, part: MemberPart) -> None:
        super().aligned(part)
        assert isinstance(part.bottom, LinearBottom)  # the exact solver is for linreg only
        self.block = CglsBlock(
            x=part.x[: part.n_train],
            weight=part.bottom.weight[:, 0],
            penalised=np.ones(part.x.shape[1]),
            lam=self.settings.l2 * part.n_train,
        )

    def handle(self, out: Outbox, msg: Message, stage: MemberStage) -> MemberStage:
        if msg.kind == Kind.EXACT_RESIDUAL:
            r = np.asarray(msg.tensors.get("r", np.zeros(0)), dtype=np.float64)
            if r.shape != (self.part.n_train,):
                raise RunFailed(f"{msg.kind} from {msg.sender}: r has shape {r.shape}")
            gamma = self.block.residual(scalar(msg, "alpha"), r)
            out.reply(msg, Kind.EXACT_RESIDUAL_REPLY, tensors={"gamma": np.array(gamma)})
        else:
            q, penalty = self.block.direction(scalar(msg, "beta"))
            out.reply(
                msg, Kind.EXACT_DIRECTION_REPLY, tensors={"q": q, "penalty": np.array(penalty)}
            )
        return stage


class ExactMaster(MasterMode):
    """The master in the exact mode: runs :func:`cgls` over every party's block."""

    def fit(
        self, io: Exchange, part: MasterPart, alignment: Alignment, rng: EpochRng
    ) -> Iterator[dict[str, float]]:
        """One round: the solve, scored on the held-out rows."""
        assert isinstance(part.top, LinearTop)
        n = alignment.n_train
        own_x = np.ones((n, 1))
        if part.own is not None:
            own_x = np.hstack([part.own.x[:n], own_x])
        weight = np.zeros(own_x.shape[1])
        penalised = np.ones(own_x.shape[1])
        penalised[-1] = 0.0  # the intercept
        block = CglsBlock(x=own_x, weight=weight, penalised=penalised, lam=self.settings.l2 * n)

        def partial_output(msg: Message) -> tuple[np.ndarray, float]:
            q = np.asarray(msg.tensors.get("q", np.zeros(0)), dtype=np.float64)
            if q.shape != (n,):
                raise RunFailed(f"q must have shape ({n},)")
            return q, scalar(msg, "penalty")

        def residual(alpha: float, r: np.ndarray) -> float:
            step, tensors = io.new_round(), {"alpha": np.array(alpha), "r": r}
            for member in self.members:
                io.send(Kind.EXACT_RESIDUAL, member, round=step, tensors=tensors)
            total = block.residual(alpha, r)
            expect = Expect(Kind.EXACT_RESIDUAL_REPLY, self.members, partial(scalar, name="gamma"))
            (gammas,) = io.collect(step, expect)
            return total + sum(gammas)

        def direction(beta: float) -> tuple[np.ndarray, float]:
            step = io.new_round()
            for member in self.members:
                io.send(Kind.EXACT_DIRECTION, member, round=step, tensors={"beta": np.array(beta)})
            q, penalty = block.direction(beta)
            expect = Expect(Kind.EXACT_DIRECTION_REPLY, self.members, partial_output)
            for member_q, member_penalty in io.collect(step, expect)[0]:
                q = q + member_q
                penalty += member_penalty
            return q, penalty

        unknowns = own_x.shape[1] + sum(alignment.features.values())
        steps = cgls(
            part.y[:n].astype(np.float64),
            residual=residual,
            direction=direction,
            tolerance=self.settings.exact_tolerance,
            max_steps=10 * unknowns + 20,
        )
        if part.own is not None:
            assert isinstance(part.own.bottom, LinearBottom)
            part.own.bottom.weight[:, 0] = weight[:-1]
        part.top.bias[0] = weight[-1]
        metrics = {"steps": float(steps)}
        self.score_held_out(io, part, alignment, metrics)
        yield metrics


MODES.register("exact", Mode(master=ExactMaster, member=ExactMember))
