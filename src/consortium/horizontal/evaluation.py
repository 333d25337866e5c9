"""Federated evaluation: trainers score the global model on their own held-out rows.

After a round, the aggregator sends the new model to its trainers; each evaluates it on the
rows it keeps aside (``data.roles.<role>.holdout``) and replies with its metrics and example
count. The aggregator combines them with a registered aggregation (example-weighted mean by
default) and records each trainer's metrics too. What each role sees: trainers receive the
global model (as in training); the aggregator receives each trainer's metrics on data it
never sees.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from consortium.horizontal.rounds import FAILED
from consortium.horizontal.settings import HorizontalSettings
from consortium.registry import Registry
from consortium.runtime import PartyContext, gather, quorum_size
from consortium.wire import Message, MetaValue

__all__ = [
    "EVALUATE",
    "EVALUATE_REPLY",
    "METRIC_AGGREGATIONS",
    "FederatedScores",
    "evaluate_locally",
    "federated_evaluation",
]

EVALUATE = "evaluate"
EVALUATE_REPLY = "evaluate.reply"

#: ``fn(scores) -> metrics``; ``scores`` holds one ``(num_examples, metrics)`` per party.
MetricAggregation = Callable[[Sequence[tuple[int, Mapping[str, float]]]], dict[str, float]]
METRIC_AGGREGATIONS: Registry[MetricAggregation] = Registry("metric aggregation")


def _common_names(scores: Sequence[tuple[int, Mapping[str, float]]]) -> list[str]:
    names = set(scores[0][1]) if scores else set()
    for _, metrics in scores[1:]:
        names &= set(metrics)
    return sorted(names)


@METRIC_AGGREGATIONS.decorator("weighted_mean")
def weighted_mean(scores: Sequence[tuple[int, Mapping[str, float]]]) -> dict[str, float]:
    """Each metric averaged with weights proportional to each party's examples."""
    total = sum(n for n, _ in scores)
    return {k: sum(n * m[k] for n, m in scores) / total for k in _common_names(scores)}


@METRIC_AGGREGATIONS.decorator("mean")
def mean(scores: Sequence[tuple[int, Mapping[str, float]]]) -> dict[str, float]:
    """Each party counts once, however many examples it holds."""
    return {k: statistics.fmean(m[k] for _, m in scores) for k in _common_names(scores)}


@METRIC_AGGREGATIONS.decorator("median")
def median(scores: Sequence[tuple[int, Mapping[str, float]]]) -> dict[str, float]:
    """The median party, per metric: robust to a few parties reporting nonsense."""
    return {k: float(statistics.median(m[k] for _, m in scores)) for k in _common_names(scores)}


@dataclass(slots=True)
class FederatedScores:
    metrics: dict[str, float]
    per_party: dict[str, dict[str, float]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def federated_evaluation(
    ctx: PartyContext,
    *,
    weights: Mapping[str, Any],
    parties: Sequence[str],
    rnd: int,
    settings: HorizontalSettings,
) -> FederatedScores:
    """Ask ``parties`` to score ``weights``; quorum and deadline as for training."""
    aggregation = METRIC_AGGREGATIONS.get(settings.evaluation.aggregation.name)
    for party in parties:
        ctx.send(EVALUATE, party, round=rnd, tensors=weights)
    out = FederatedScores(metrics={})
    scores: list[tuple[int, Mapping[str, float]]] = []

    def on_reply(msg: Message) -> str | None:
        if FAILED in msg.meta:
            return f"failed: {msg.meta[FAILED]}"
        n = msg.meta.get("num_examples")
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            return f"num_examples must be a positive integer, got {n!r}"
        metrics = {
            k: float(v)
            for k, v in msg.meta.items()
            if k != "num_examples" and isinstance(v, int | float) and not isinstance(v, bool)
        }
        scores.append((n, metrics))
        out.per_party[msg.sender] = metrics
        return None

    result = gather(
        ctx,
        expected=parties,
        kind=EVALUATE_REPLY,
        round=rnd,
        timeout=settings.round_timeout,
        quorum=quorum_size(settings.quorum, len(parties)),
        on_reply=on_reply,
    )
    out.failures = dict(result.failures)
    out.metrics = aggregation(scores) if scores else {}
    return out


def evaluate_locally(ctx: PartyContext, model: Any, msg: Message) -> None:
    """A trainer's side: score the received model on its held-out rows and reply."""
    test = ctx.data.test
    if test is None or len(test.y) == 0:
        ctx.reply(msg, EVALUATE_REPLY, meta={FAILED: "no held-out rows on this party"})
        return
    model.set_weights(msg.tensors)
    meta: dict[str, MetaValue] = {"num_examples": len(test.y)}
    meta.update({k: float(v) for k, v in model.evaluate(test.x, test.y).items()})
    ctx.reply(msg, EVALUATE_REPLY, meta=meta)
