"""FedAvg of a 10-class softmax regression: Consortium's in-process launcher against a plain
single-process numpy loop doing the same arithmetic, in the same benchmark run.

Workload (issue "Foundation"): 100,000 x 50 rows from make_classification (10 classes, 30
informative), 80/20 split, standardised; SGD lr 0.05, batch 32, one local epoch per round;
20 rounds; FedAvg weighted by examples; (a) 10 trainers all sampled, (b) 1,000 trainers with
100 sampled per round.

Both sides use the same data preparation and the same model code (``consortium.ml``), so
the difference is what the framework adds: parties, messages, threads, rounds, quorum,
tracking to the run directory (the variant ``no-curves`` without drawing ``curves.png`` at
the end, ``tracking.curves: false``). Each variant runs in a fresh process, timed from its first
line (before imports). With ``--no-training`` both sides replace local training by a no-op
(the model comes back unchanged), so that a round holds only what the framework adds to the
plain loop's sampling, model loading and evaluation: its per-round overhead, measured
without the noise of the training itself. Usage: ``python bench/fedavg_softmax.py
[--repeat N] [--no-training] [--out FILE]``.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

SCENARIOS = {
    "a": {"trainers": 10, "per_round": None},
    "b": {"trainers": 1000, "per_round": 100},
}
SEED = 11
ROUNDS = 20
QUICK_ARGS: list[str] = ["--repeat", "1"]


def job(scenario: str, workers: int, *, curves: bool = True) -> dict:
    sc = SCENARIOS[scenario]
    selection = (
        {"name": "all"}
        if sc["per_round"] is None
        else {"name": "random", "args": {"count": sc["per_round"]}}
    )
    return {
        "name": f"bench-{scenario}",
        "seed": SEED,
        "topology": {
            "template": "star",
            "roles": {"aggregator": {"count": 1}, "trainer": {"count": sc["trainers"]}},
        },
        "data": {
            "dataset": {
                "name": "synthetic",
                "args": {
                    "n_samples": 100_000,
                    "n_features": 50,
                    "n_informative": 30,
                    "n_classes": 10,
                },
            },
            "test_fraction": 0.2,
            "standardize": True,
        },
        "model": {"name": "logreg"},
        "algorithm": {
            "rounds": ROUNDS,
            "local": {"epochs": 1, "batch_size": 32, "lr": 0.05},
            "selection": selection,
        },
        "tracking": {"console": False, "mlflow": {"enabled": False}, "curves": curves},
        "runtime": {"workers": workers},
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_consortium(scenario: str, workers: int, *, curves: bool = True) -> dict:
    import consortium

    with tempfile.TemporaryDirectory() as tmp:
        spec = job(scenario, workers, curves=curves)
        result = consortium.run(spec, out=Path(tmp) / "run", quiet=True)
        rounds = [
            json.loads(x)["duration_s"]
            for x in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()
        ]
    total = time.perf_counter() - T0
    assert result.ok, result.error
    return {
        "total_s": total,
        "rounds_s": rounds,
        "accuracy": result.metrics["accuracy"],
        "peak_rss_mb": peak_rss_mb(),
    }


def run_plain(scenario: str) -> dict:
    """The same computation with no framework: data, then a loop over rounds and trainers."""
    import numpy as np

    from consortium.jobs import bind_data, parse_job
    from consortium.runtime import derive_rng

    loaded = parse_job(job(scenario, 1))
    parties = bind_data(loaded)
    trainers = loaded.topology.with_role("trainer")
    test = parties["aggregator"].test
    global_model = parties["aggregator"].model_factory()
    local_model = parties["aggregator"].model_factory()
    weights = global_model.get_weights()
    per_round = SCENARIOS[scenario]["per_round"]
    rounds = []
    for rnd in range(1, ROUNDS + 1):
        started = time.perf_counter()
        if per_round is None:
            selected = trainers
        else:
            picked = derive_rng(SEED, rnd, 0x5E1EC7).choice(
                len(trainers), size=per_round, replace=False
            )
            selected = [trainers[i] for i in sorted(picked)]
        acc = {k: np.zeros(v.shape, np.float64) for k, v in weights.items()}
        total = 0.0
        for name in selected:
            local_model.set_weights(weights)
            train = parties[name].train
            rank = loaded.topology.party(name).rank
            local_model.fit(
                train.x, train.y, epochs=1, batch_size=32, lr=0.05, rng=derive_rng(SEED, rnd, rank)
            )
            n = len(train.y)
            for k, v in local_model.get_weights().items():
                acc[k] += v * float(n)
            total += n
        weights = {k: (v / total).astype(np.float32) for k, v in acc.items()}
        global_model.set_weights(weights)
        metrics = global_model.evaluate(test.x, test.y)
        rounds.append(time.perf_counter() - started)
    return {
        "total_s": time.perf_counter() - T0,
        "rounds_s": rounds,
        "accuracy": metrics["accuracy"],
        "peak_rss_mb": peak_rss_mb(),
    }


def _skip_training() -> None:
    from consortium.ml._affine import AffineModel

    def fit(self: AffineModel, x: object, y: object, **settings: object) -> dict[str, float]:
        return {"loss": 0.0}

    AffineModel.fit = fit  # type: ignore[method-assign,assignment]


def child(args: list[str], *, no_training: bool) -> None:
    kind, scenario, workers = args[0], args[1], int(args[2])
    if no_training:
        _skip_training()
    if kind == "plain":
        out = run_plain(scenario)
    else:
        out = run_consortium(scenario, workers, curves=kind != "no-curves")
    print(json.dumps(out))


def measure(kind: str, scenario: str, workers: int, *, no_training: bool = False) -> dict:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, scenario, str(workers)]
        + (["--no-training"] if no_training else []),
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--no-training", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(args.child, no_training=args.no_training)
        return
    rows = []
    variants = (("plain", 1), ("consortium", 1), ("no-curves", 1), ("consortium", 2))
    for scenario in SCENARIOS:
        # repeats interleaved, so that a drift of the machine's speed reaches every variant
        runs: dict[tuple[str, int], list[dict]] = {v: [] for v in variants}
        for _ in range(args.repeat):
            for kind, workers in variants:
                runs[kind, workers].append(
                    measure(kind, scenario, workers, no_training=args.no_training)
                )
        for kind, workers in variants:
            best = min(runs[kind, workers], key=lambda r: r["total_s"])
            rounds = sorted(best["rounds_s"])
            rows.append(
                {
                    "scenario": scenario,
                    "kind": kind,
                    "workers": workers,
                    "total_s": best["total_s"],
                    "round_median_ms": 1000 * rounds[len(rounds) // 2],
                    "setup_s": best["total_s"] - sum(best["rounds_s"]),
                    "accuracy": best["accuracy"],
                    "peak_rss_mb": best["peak_rss_mb"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
