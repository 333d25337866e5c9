"""The worker: holds its tables, answers the coordinator's tasks, guards its own privacy.

A worker trusts the job file it was given (its tables, budgets and the minimum number of
parties in a sum), not the coordinator. For each task it validates the operation and its
args as data, refuses a mask nonce it has seen before (a reused mask would reveal the
difference of two answers), refuses a sum over fewer parties than ``min_parties`` unless the
operation is one whose per-party output is meant to be seen, charges every noisy statistic
to its own accountant before releasing it, adds its share of the noise, and masks the
statistics for secure summation. (What each role sees: :mod:`consortium.analytics.programs`.)
"""

from __future__ import annotations

import json
import logging
import secrets
import zlib
from collections.abc import Mapping

import numpy as np

from consortium.analytics.operations import LocalData, State, args_from_wire, dumps
from consortium.analytics.settings import AnalyticsSettings
from consortium.analytics.tables import Table
from consortium.errors import ConfigError, ConsortiumError
from consortium.privacy.dp import Accountant, Budget, noise_share
from consortium.privacy.secure_sum import MaskingParty
from consortium.runtime import JOIN, STOP, PartyContext, derive_rng
from consortium.transport import PEER_LOST
from consortium.wire import Message, MetaValue

__all__ = ["KEYS", "RESULT", "TASK", "Worker"]

log = logging.getLogger(__name__)

KEYS = "analytics.keys"  # coordinator -> workers: every worker's public key
TASK = "analytics.task"  # coordinator -> workers: one request of one job
RESULT = "analytics.result"  # workers -> coordinator: masked sums and plain arrays, or error
_NOISE_KEY = 0xD9  # keeps the seeded noise stream apart from the operation's own stream


class Worker:
    """Answers tasks for the parties' tables (``ctx.data``: table name -> :class:`Table`)."""

    def __init__(self, ctx: PartyContext) -> None:
        self.settings: AnalyticsSettings = ctx.settings
        self.tables: Mapping[str, Table] = ctx.data or {}
        self.masking = MaskingParty(ctx.name)
        tables = self.settings.tables
        self.accountant = Accountant(
            {name: Budget(t.privacy.epsilon, t.privacy.delta) for name, t in tables.items()}
        )
        self._nonces: set[int] = set()

    def start(self, ctx: PartyContext) -> None:
        key = np.frombuffer(self.masking.public_key, dtype=np.uint8)
        ctx.send(JOIN, ctx.topology.hub, tensors={"dh_public": key})

    def handle(self, ctx: PartyContext, msg: Message) -> bool:
        if msg.kind == KEYS and msg.sender == ctx.topology.hub:
            self.masking.agree({k: v.tobytes() for k, v in msg.tensors.items()})
            return True
        if msg.kind == TASK and msg.sender == ctx.topology.hub:
            try:
                meta, tensors = self._answer(ctx, msg)
            except ConsortiumError as exc:
                log.warning("%s refused %s: %s", ctx.name, msg.meta.get("job"), exc)
                ctx.reply(msg, RESULT, meta={"error": str(exc)[:4000]})
            else:
                ctx.reply(msg, RESULT, meta=meta, tensors=tensors)
            return True
        if msg.kind == STOP or (msg.kind == PEER_LOST and msg.sender == ctx.topology.hub):
            return False
        log.debug("%s ignored %s from %s", ctx.name, msg.kind, msg.sender)
        return True

    def _answer(
        self, ctx: PartyContext, msg: Message
    ) -> tuple[dict[str, MetaValue], dict[str, np.ndarray]]:
        job = str(msg.meta.get("job", ""))
        op, args = args_from_wire(str(msg.meta.get("op", "")), str(msg.meta.get("args", "")))
        parties = json.loads(str(msg.meta.get("parties", "[]")))
        if op.placement != "workers" or not isinstance(parties, list) or ctx.name not in parties:
            raise ConfigError(f"task for job {job!r} is not one this worker runs")
        if len(parties) < self.settings.min_parties and not op.round_robin:
            raise ConfigError(
                f"job {job!r} would add up {len(parties)} part(s), fewer than min_parties="
                f"{self.settings.min_parties}: one party's answer would be seen"
            )
        if msg.round in self._nonces:
            raise ConfigError(f"job {job!r} reuses a mask nonce; refusing to answer")
        self._nonces.add(msg.round)
        try:
            op.check(args, self.settings.tables)
        except ValueError as exc:
            raise ConfigError(f"job {job!r}: {exc}") from None
        request = {k[4:]: v for k, v in msg.tensors.items() if k.startswith("req.")}
        arrays = {k[6:]: v for k, v in msg.tensors.items() if k.startswith("state.")}
        meta = json.loads(str(msg.meta.get("state", "{}")))
        data = LocalData(
            party=ctx.name,
            tables=self.tables,
            state=State(arrays=arrays, meta=meta if isinstance(meta, dict) else {}),
            rng=derive_rng(ctx.seed, zlib.crc32(job.encode()), ctx.party.rank),
        )
        partial = op.local(args, request, data)
        names = sorted(partial.sums)
        vectors = [np.asarray(partial.sums[n].values, dtype=np.float64).ravel() for n in names]
        dp = getattr(args, "dp", None)
        if dp is not None:  # charge each statistic, then add this party's share of its noise
            each = Budget(dp.epsilon / op.releases(args), dp.delta / op.releases(args))
            for i, name in enumerate(names):
                for table in op.cost(args):
                    self.accountant.charge(table, each, what=f"job {job!r} ({name})")
                stat = partial.sums[name]
                vectors[i] = vectors[i] + noise_share(
                    dp.mechanism,
                    self._noise_rng(ctx, msg.round),
                    sensitivity=stat.l2 if dp.mechanism == "gaussian" else stat.l1,
                    cost=each,
                    parties=len(parties),
                    shape=vectors[i].shape,
                )
        flat = np.concatenate(vectors) if vectors else np.zeros(0)
        masked = self.masking.mask(flat, nonce=msg.round, parties=sorted(parties))
        layout = [[n, int(v.size)] for n, v in zip(names, vectors, strict=True)]
        tensors = {"masked": masked, **{f"plain.{k}": v for k, v in partial.plain.items()}}
        return {"layout": dumps(layout)}, tensors

    def _noise_rng(self, ctx: PartyContext, nonce: int) -> np.random.Generator:
        """A fresh generator for one statistic's noise (see NoiseSettings)."""
        if self.settings.noise.randomness == "seeded":
            return ctx.rng(nonce, _NOISE_KEY)
        return np.random.default_rng(secrets.randbits(128))
