"""Horizontal aggregation against the memory-bandwidth reference, in the same run.

Two comparisons (issue "Horizontal FL"), on N client updates of P float32 parameters each
(N=100, P=10M by default: 4 GB):

* **weighted sum**: ``WeightedSum`` (the FedAvg path: each reply added as it arrives, then
  ``mean()``) against the same bytes in one preallocated (N, P) array reduced with a single
  numpy matrix-vector product (``w @ X``, sgemv). Target: within 1.3x. For context, the
  same class with its numpy fold (``compiled=False``, as it runs without numba), the
  compiled fold over every reply in one call (none folded before the mean), and the fold
  of one reply at a time into a float64 accumulator through a float64 scratch are timed
  too.
* **median**: ``UpdateStack.median()`` (FedMedian) against ``numpy.median(X, axis=0)`` over
  the same stacked array. Target: within 3x.

The data is generated once, straight into the ``UpdateStack`` buffer; its rows are the
replies (read-only views) and ``X`` of the references, so every side reads the same bytes.
Each of ``--repeat`` rounds runs every side once, the reference first, each after a pause
that lets the other side's worker threads go idle. Times are the median over the rounds;
GB/s is the input's bytes (N x P x 4) over that time; "x reference" is the median over the
rounds of a side's time over the reference's in the same round, steadier than a ratio of
medians where other tenants share the cores and the memory bus; "best x best" is the
fastest run over the reference's fastest. Peak extra memory is
what ``tracemalloc`` (which sees numpy's allocations) records in one further, untimed run.
Results are checked against each other outside the timed spans. BLAS and numba get the
same number of threads, ``--threads`` (default 1; set before numpy is imported). Without
numba (the ``fast`` extra) the rows that need it are left out.

Usage, from the repository root::

    python bench/aggregate.py [--n 100] [--p 10000000] [--repeat 3] [--threads 1] [--out FILE]
"""

from __future__ import annotations

import os
import sys


def _threads() -> str:
    """``--threads`` from the command line, read before numpy is imported."""
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return "1"


for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = _threads()

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from consortium.horizontal.aggregate import UpdateStack, WeightedSum  # noqa: E402

NUMBA = importlib.util.find_spec("numba") is not None

QUICK_ARGS: list[str] = ["--n", "20", "--p", "300000", "--repeat", "1"]

SEED = 5
# A pause before each timed run: BLAS's and numba's worker threads spin for a while after a
# call returns, and with two threads on two cores the spinning pool of the side timed just
# before slowed the next side by 1.2-1.5x, whichever side that was.
SETTLE_S = 0.3
TARGETS = {"weighted sum": 1.3, "median": 3.0}
CONSORTIUM = {"WeightedSum.add x N, mean()", "UpdateStack.median()"}  # the rows with a target


def build(n: int, p: int) -> tuple[UpdateStack, np.ndarray]:
    """An UpdateStack filled with n standard-normal float32 rows of p, and the weights
    (example counts, as FedAvg uses them)."""
    rng = np.random.default_rng(SEED)
    stack = UpdateStack(like={"w": np.zeros(p, np.float32)}, capacity=n)
    for _ in range(n):
        stack.add({"w": rng.standard_normal(p, dtype=np.float32)})
    weights = rng.integers(1, 5000, n).astype(np.float64)
    return stack, weights


def weighted_sum(rows: np.ndarray, weights: np.ndarray, *, compiled: bool = True) -> np.ndarray:
    acc = WeightedSum(like={"w": rows[0]}, compiled=compiled)
    for row, w in zip(rows, weights, strict=True):
        acc.add({"w": row}, float(w))
    return acc.mean()["w"]


def fold_alone(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The compiled fold's mean pass over every reply in one call: ``weighted_sum``
    without the folds of held replies that more than 2 GiB of them take."""
    from consortium.horizontal import compiled

    mean = np.empty(rows.shape[1], rows.dtype)
    compiled.fold(np.zeros(rows.shape[1]), list(rows), weights, out=mean, total=weights.sum())
    return mean


def one_at_a_time(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each reply multiplied into a float64 scratch and added to the accumulator as it
    comes: the accumulator is read and written once per reply."""
    acc = np.zeros(rows.shape[1])
    scratch = np.empty(rows.shape[1])
    for row, w in zip(rows, weights, strict=True):
        np.multiply(row, w, out=scratch)
        np.add(acc, scratch, out=acc)
    return (acc / weights.sum()).astype(rows.dtype)


def peak_extra(fn: Callable[[], object]) -> int:
    """Bytes allocated at the peak of ``fn`` above what was allocated before it."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return peak - base


def measure(args: argparse.Namespace) -> dict[str, Any]:
    stack, weights = build(args.n, args.p)
    rows = stack.rows  # (n, p) read-only: the replies, and X of the references
    w32 = weights.astype(np.float32)
    nbytes = rows.nbytes
    cases: dict[str, dict[str, Callable[[], object]]] = {
        "weighted sum": {
            "reference: w @ X (one sgemv)": lambda: w32 @ rows,
            "WeightedSum.add x N, mean()": lambda: weighted_sum(rows, weights),
            "the same, numpy fold": lambda: weighted_sum(rows, weights, compiled=False),
            **(
                {"compiled fold, all N in one call": lambda: fold_alone(rows, weights)}
                if NUMBA
                else {}
            ),
            "one reply at a time": lambda: one_at_a_time(rows, weights),
        },
        "median": {
            "reference: np.median(X, axis=0)": lambda: np.median(rows, axis=0),
            "UpdateStack.median()": stack.median,
        },
    }

    # correctness, outside the timed spans
    exact = (weights @ rows.astype(np.float64)) / weights.sum() if args.p <= 10**6 else None
    ref = (w32 @ rows) / w32.sum()
    means = [weighted_sum(rows, weights), weighted_sum(rows, weights, compiled=False)]
    if NUMBA:  # the first call above compiled the fold (or loaded it from numba's cache)
        means.append(fold_alone(rows, weights))
    for mean in means:
        np.testing.assert_allclose(mean, ref, rtol=1e-4, atol=1e-5)
        if exact is not None:
            np.testing.assert_allclose(mean, exact.astype(np.float32), rtol=1e-6, atol=1e-7)
    del mean, means, ref, exact
    np.testing.assert_array_equal(stack.median()["w"], np.median(rows, axis=0))

    out_rows = []
    for case, sides in cases.items():
        times: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.repeat):
            for name, fn in sides.items():
                time.sleep(SETTLE_S)
                t0 = time.perf_counter()
                result = fn()
                times[name].append(time.perf_counter() - t0)
                del result
        ref_times = times[next(iter(sides))]
        ref_best = min(ref_times)
        for name, fn in sides.items():
            t = statistics.median(times[name])
            ratios = [a / b for a, b in zip(times[name], ref_times, strict=True)]
            out_rows.append(
                {
                    "case": case,
                    "method": name,
                    "seconds": t,
                    "times": times[name],
                    "gb_per_s": nbytes / t / 1e9,
                    "ratio": statistics.median(ratios),
                    "best_ratio": min(times[name]) / ref_best,
                    "target": TARGETS[case] if name in CONSORTIUM else None,
                    "peak_extra_mb": peak_extra(fn) / 2**20,
                }
            )
            print(json.dumps(out_rows[-1]), flush=True)
    return {
        "n": args.n,
        "p": args.p,
        "repeat": args.repeat,
        "input_gb": nbytes / 1e9,
        "model_mb": args.p * 4 / 2**20,
        "machine": f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cpus",
        "numpy": np.__version__,
        "threads": int(os.environ["NUMBA_NUM_THREADS"]),
        "compiled": NUMBA,
        "rows": out_rows,
    }


def table(result: dict[str, Any]) -> str:
    head = (
        f"N={result['n']} updates x P={result['p']:,} float32 "
        f"({result['input_gb']:.2f} GB; one model {result['model_mb']:.0f} MiB), "
        f"median of {result['repeat']}, {result['threads']} thread(s), "
        f"numba {'installed' if result['compiled'] else 'not installed'}\n\n"
        "| case | method | time (s) | GB/s | x reference | best x best | target "
        "| peak extra (MiB) |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    )
    lines = []
    for r in result["rows"]:
        target = "" if r["target"] is None else f"<= {r['target']}"
        lines.append(
            f"| {r['case']} | {r['method']} | {r['seconds']:.3f} | {r['gb_per_s']:.2f} | "
            f"{r['ratio']:.2f} | {r['best_ratio']:.2f} | {target} | {r['peak_extra_mb']:.0f} |"
        )
    return head + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=100, help="client updates (default 100)")
    parser.add_argument("--p", type=int, default=10_000_000, help="parameters per update")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side (median)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS and numba threads")
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    result = measure(args)
    print()
    print(table(result))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
