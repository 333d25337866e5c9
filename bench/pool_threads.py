"""The in-process pool's threads on work that holds the interpreter lock and on work that
releases it, against a plain loop doing the same tasks one after another, in the same run.

Each workload is rounds of tasks, the shape of a simulated round: the driver (this thread)
queues ``--tasks`` tasks, runs queued tasks itself while it waits (as a hub's driver does)
and folds each task's result into an accumulator as it arrives. Workloads:

- ``numpy-small``: a trainer of the FedAvg benchmark, softmax regression on 80 rows of 50
  features, batches of 32 (many small numpy calls; each BLAS call releases the lock and
  takes it back);
- ``numpy-large``: the same model on 256 rows of 784 features, batches of 128 (BLAS calls
  long enough for two threads to gain);
- ``torch-mlp``: a torch MLP (64-64-10) trained on 256 rows, batches of 32 (torch releases
  the lock inside each operation; left out when torch is not installed);
- ``wait``: each task waits 2 ms (a party waiting on I/O or a simulated delay).

Variants: *plain* (the tasks called in a loop), the pool with one worker, with two workers
and both always taking work (``adaptive=False``), and with two workers as configured by
default (its governor measures and turns the helper off when it does not help). BLAS is
pinned to one thread. Each variant's rounds run ``--repeat`` times, interleaved with the
other variants; the table has the median round of the best repeat.

The last column lists the governor's decisions in the best repeat: its measured cost a task
with the helper on and off, and which it kept. Usage: ``python bench/pool_threads.py
[--rounds N] [--tasks N] [--repeat N] [--workloads NAME ...]``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import importlib.util  # noqa: E402
import statistics  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import deque  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from consortium.ml.logreg import SoftmaxRegression  # noqa: E402
from consortium.runtime.governor import Governor  # noqa: E402
from consortium.runtime.host import ActorPool  # noqa: E402

QUICK_ARGS: list[str] = ["--rounds", "5", "--repeat", "1"]

Task = Callable[[int], np.ndarray]


def softmax_task(rows: int, features: int, batch: int) -> Task:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, features)).astype(np.float32)
    y = rng.integers(0, 10, rows)
    start = SoftmaxRegression(n_features=features, n_classes=10).get_weights()

    def task(i: int) -> np.ndarray:
        model = SoftmaxRegression(n_features=features, n_classes=10)
        model.set_weights(start)
        model.fit(x, y, epochs=1, batch_size=batch, lr=0.05, rng=np.random.default_rng(i))
        return model.get_weights()["W"]

    return task


def torch_task() -> Task:
    import torch

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 64, generator=gen)
    y = torch.randint(0, 10, (256,), generator=gen)

    torch.manual_seed(0)
    initial = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))

    def task(i: int) -> np.ndarray:
        net = copy.deepcopy(initial)
        opt = torch.optim.SGD(net.parameters(), lr=0.05)
        for first in range(0, 256, 32):
            rows = slice(first, first + 32)
            loss = torch.nn.functional.cross_entropy(net(x[rows]), y[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
        return net[2].weight.detach().numpy().copy()

    return task


def wait_task() -> Task:
    out = np.ones((50, 10), np.float32)

    def task(i: int) -> np.ndarray:
        time.sleep(0.002)
        return out

    return task


WORKLOADS: dict[str, Callable[[], Task]] = {
    "numpy-small": lambda: softmax_task(80, 50, 32),
    "numpy-large": lambda: softmax_task(256, 784, 128),
    "torch-mlp": torch_task,
    "wait": wait_task,
}
VARIANTS = ("plain", "pool, 1 worker", "pool, 2 workers, always", "pool, 2 workers, governed")


def plain_round(task: Task, tasks: int, rnd: int) -> np.ndarray:
    acc = None
    for i in range(tasks):
        w = task(rnd * tasks + i)
        acc = w.astype(np.float64) if acc is None else acc + w
    assert acc is not None
    return acc


def pool_round(pool: ActorPool, task: Task, tasks: int, rnd: int) -> np.ndarray:
    results: deque[np.ndarray] = deque()
    cond = threading.Condition()

    def submit(i: int) -> None:
        def run() -> None:
            w = task(i)
            with cond:
                results.append(w)
                cond.notify()

        pool.submit(run)

    for i in range(tasks):
        submit(rnd * tasks + i)
    acc, folded = None, 0
    while folded < tasks:
        with cond:
            while not results:
                # run queued work while waiting, as a driver's mailbox does; block otherwise
                cond.release()
                try:
                    ran = pool.run_one()
                finally:
                    cond.acquire()
                if not ran and not results:
                    cond.wait()
            w = results.popleft()
        acc = w.astype(np.float64) if acc is None else acc + w
        folded += 1
    assert acc is not None
    return acc


def measure(workload: str, rounds: int, tasks: int, repeat: int) -> dict[str, dict]:
    task = WORKLOADS[workload]()
    pools = {
        "pool, 1 worker": lambda: ActorPool(workers=1, on_crash=_crash),
        "pool, 2 workers, always": lambda: ActorPool(workers=2, on_crash=_crash, adaptive=False),
        "pool, 2 workers, governed": lambda: ActorPool(workers=2, on_crash=_crash),
    }
    best: dict[str, dict] = {}
    reference = plain_round(task, tasks, 0)
    for _ in range(repeat):
        for variant in VARIANTS:
            times = []
            pool = None if variant == "plain" else pools[variant]()
            try:
                for rnd in range(rounds):
                    t0 = time.perf_counter()
                    acc = (
                        plain_round(task, tasks, rnd)
                        if pool is None
                        else pool_round(pool, task, tasks, rnd)
                    )
                    times.append(time.perf_counter() - t0)
                    if rnd == 0:
                        np.testing.assert_allclose(acc, reference, rtol=1e-5, atol=1e-6)
                governor = None if pool is None else pool.governor
                helpers = "" if governor is None else _decisions(governor)
            finally:
                if pool is not None:
                    pool.close()
            row = {"median_ms": statistics.median(times) * 1e3, "helpers": helpers}
            if variant not in best or row["median_ms"] < best[variant]["median_ms"]:
                best[variant] = row
    return best


def _decisions(governor: Governor) -> str:
    """The governor's decisions: cost a task with the helper on / off (us), and its choice."""
    return ", ".join(
        f"{on * 1e6:.0f}/{off * 1e6:.0f} {'on' if keep else 'off'}"
        for on, off, keep in governor.decisions
    )


def _crash(party: str, exc: BaseException) -> None:
    raise RuntimeError(f"task failed: {exc}") from exc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    args = parser.parse_args()
    print(f"{args.tasks} tasks a round, {args.rounds} rounds, best of {args.repeat}")
    print("| workload | variant | median round ms | vs plain | governor: us a task on/off, kept |")
    print("| --- | --- | ---: | ---: | --- |")
    for workload in args.workloads:
        if workload.startswith("torch") and importlib.util.find_spec("torch") is None:
            print(f"| {workload} | left out: torch is not installed | | | |")
            continue
        rows = measure(workload, args.rounds, args.tasks, args.repeat)
        plain = rows["plain"]["median_ms"]
        for variant in VARIANTS:
            row = rows[variant]
            print(
                f"| {workload if variant == 'plain' else ''} | {variant} | "
                f"{row['median_ms']:.1f} | {row['median_ms'] / plain:.2f}x | {row['helpers']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
