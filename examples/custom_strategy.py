"""A strategy of your own: FedAvg with each update's change clipped to a norm bound.

Norm bounding (Sun, Kairouz, Suresh, McMahan, "Can You Really Backdoor Federated
Learning?", 2019): the server scales each trainer's delta ``x_k - x`` down to at most
``max_norm`` in L2 before the example-weighted mean, so no single trainer can move the
model far in one round.

    python examples/custom_strategy.py              # ten trainers on digits, in-process
    python examples/custom_strategy.py --rounds 3

Run as a plugin instead (any launcher): name this module under ``plugins:`` and set
``algorithm.strategy: {name: fedavg_clipped, args: {max_norm: 1.0}}``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Annotated

import numpy as np
from pydantic import Field, validate_call

import consortium
from consortium.strategy import (
    ServerState,
    Strategy,
    TooFewUpdates,
    WeightedSum,
    Weights,
    check_update,
    register_strategy,
)


class ClippedRound:
    """The round's accumulator: the example-weighted sum of the clipped deltas."""

    def __init__(self, *, model: Weights, max_norm: float) -> None:
        self.model, self.max_norm = model, max_norm
        self.sum = WeightedSum(like=model)
        self.clipped = 0

    def add(self, party: str, weights: Weights, meta: Mapping[str, object]) -> str | None:
        n = meta.get("num_examples")
        if not isinstance(n, int) or n <= 0:
            return f"num_examples must be a positive integer, got {n!r}"
        if (reason := check_update(weights, self.model)) is not None:
            return reason  # recorded as this party's failure; the round goes on
        delta = {k: weights[k].astype(np.float64) - self.model[k] for k in self.model}
        norm = float(np.sqrt(sum(np.sum(d * d) for d in delta.values())))
        if norm > self.max_norm:
            delta = {k: d * (self.max_norm / norm) for k, d in delta.items()}
            self.clipped += 1
        self.sum.add(delta, float(n))
        return None


@register_strategy("fedavg_clipped")
class FedAvgClipped(Strategy[ClippedRound]):
    """FedAvg over deltas clipped to ``max_norm``."""

    @validate_call
    def __init__(
        self, *, max_norm: Annotated[float, Field(gt=0, description="L2 bound of a delta")] = 1.0
    ) -> None:
        self.max_norm = max_norm

    def begin(self, round: int, state: ServerState, *, expected: int | None = None) -> ClippedRound:
        return ClippedRound(model=state.weights, max_norm=self.max_norm)

    def aggregate(
        self, round: int, state: ServerState, acc: ClippedRound, failures: Mapping[str, str]
    ) -> tuple[ServerState, dict[str, float]]:
        if acc.sum.count == 0:
            advice = "add trainers or raise algorithm.quorum"
            raise TooFewUpdates(
                "fedavg_clipped", needed=1, received=0, why="no updates", advice=advice
            )
        step = acc.sum.mean()
        weights = {k: (v + step[k]).astype(v.dtype) for k, v in state.weights.items()}
        metrics = {"clipped": float(acc.clipped), "replies": float(acc.sum.count)}
        return ServerState(round=round, weights=weights), metrics


JOB = {
    "name": "custom-strategy",
    "seed": 7,
    "topology": {"template": "star", "roles": {"aggregator": {}, "trainer": {"count": 10}}},
    "data": {"dataset": {"name": "digits"}},
    "model": {"name": "logreg"},
    "algorithm": {"rounds": 10, "local": {"epochs": 1, "batch_size": 16, "lr": 0.05}},
    "tracking": {"mlflow": {"enabled": False}},
}


def main(argv: list[str] | None = None) -> consortium.RunResult:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--max-norm", type=float, default=1.0)
    parser.add_argument("--out", default=None, help="run directory (default: runs/...)")
    args = parser.parse_args(argv)
    result = consortium.run(
        JOB,
        overrides=[f"algorithm.rounds={args.rounds}"],
        strategy=FedAvgClipped(max_norm=args.max_norm),
        out=args.out,
    )
    print(f"{result.status}: accuracy {result.metrics['accuracy']:.3f}, in {result.run_dir}")
    return result


if __name__ == "__main__":
    main()
