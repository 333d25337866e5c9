"""Split-NN training against the same network trained in one place, in the same run.

*consortium*: ``examples/vfl_splitnn_mnist.yaml`` (digits cut into vertical strips, one per
member, the master holding the labels) through ``consortium.run`` on the in-process
launcher: alignment by private set intersection, then every batch's forward and backward
passes as messages between the parties. *central*: the same bottoms and top as one torch
module (``consortium.vertical.central_network``), initialised from the same seeds and
trained on the pooled strips with the same batches, optimiser and epochs; its set-up pools
the parties' columns by record id. Both evaluate the test rows once, after the last epoch,
use one torch thread, and run in a fresh process each, timed from its first line (imports,
data and, for consortium, the private alignment included). Reported: wall time end to end,
the epochs alone, and test accuracy.

Usage: ``python bench/vfl_splitnn.py [--rounds 10] [--bottom mlp] [--repeat 3] [--out FILE]``.
"""

from __future__ import annotations

import os
import time

T0 = time.perf_counter()

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "vfl_splitnn_mnist.yaml"
BOTTOMS = {
    "mlp": {"name": "mlp", "args": {"hidden": [32]}},
    "resnet": {"name": "resnet", "args": {"channels": [4, 8]}},
    "efficientnet": {"name": "efficientnet", "args": {"channels": [4, 8], "head": 8}},
}
QUICK_ARGS: list[str] = ["--rounds", "2", "--repeat", "1"]


def job(args: argparse.Namespace) -> dict[str, Any]:
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["algorithm"]["rounds"] = args.rounds
    raw["model"]["args"]["bottom"] = BOTTOMS[args.bottom]
    raw["algorithm"]["eval_every"] = args.rounds  # score once, at the end, as central does
    raw["tracking"] = {"console": False, "mlflow": {"enabled": False}}
    return raw


def run_consortium(raw: dict[str, Any]) -> dict[str, float]:
    import consortium

    with tempfile.TemporaryDirectory() as tmp:
        result = consortium.run(copy.deepcopy(raw), out=Path(tmp) / "run", quiet=True)
        lines = (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()
    total = time.perf_counter() - T0
    assert result.ok, result.error
    epochs = sum(json.loads(line)["duration_s"] for line in lines)
    return {"total_s": total, "epochs_s": epochs, "accuracy": result.metrics["accuracy"]}


def run_central(raw: dict[str, Any]) -> dict[str, float]:
    """The same network and batches on the pooled data (what the protocol never does)."""
    from consortium.jobs import bind_data, parse_job
    from consortium.runtime import derive_rng, derive_seed
    from consortium.vertical import NET_KEY, TOP_KEY, build_net, central_network
    from consortium.vertical.local import (
        EPOCH_KEY,
        SPLIT_KEY,
        batches,
        fit_standardizer,
        split_records,
    )

    torch.set_num_threads(1)
    loaded = parse_job(copy.deepcopy(raw))
    data = bind_data(loaded)
    topology, seed, settings = loaded.topology, loaded.spec.seed, loaded.algorithm
    master, members = topology.hub, topology.with_role("member")
    mine = data[master]
    held = set.intersection(*(set(data[m].ids) for m in members))
    rows = np.array([i for i, rid in enumerate(mine.ids) if rid in held])
    rank = topology.party(master).rank
    order, n_train = split_records(len(rows), mine.test_fraction, derive_rng(seed, SPLIT_KEY, rank))
    ids = [mine.ids[i] for i in rows[order]]
    assert mine.y is not None
    y = torch.from_numpy(np.asarray(mine.y[rows[order]]))
    blocks, nets = [], []
    spec = raw["model"]["args"]
    for name in members:
        part = data[name]
        index = {rid: i for i, rid in enumerate(part.ids)}
        x = part.x[[index[rid] for rid in ids]].astype(np.float64)
        mean, scale = fit_standardizer(x[:n_train])
        blocks.append(torch.from_numpy(((x - mean) / scale).astype(np.float32)))
        nets.append(
            build_net(
                spec["bottom"]["name"],
                spec["bottom"].get("args", {}),
                in_features=part.n_features,
                out_features=spec["embedding"],
                image_shape=part.image_shape,
                seed=derive_seed(seed, NET_KEY, topology.party(name).rank),
            )
        )
    joined = spec["embedding"] * (len(members) if spec["combine"] == "concat" else 1)
    top = build_net(
        spec["top"]["name"],
        spec["top"].get("args", {}),
        in_features=joined,
        out_features=int(mine.n_classes or 0),
        image_shape=None,
        seed=derive_seed(seed, TOP_KEY),
    )
    net = central_network(nets, top, combine=spec["combine"])
    opt = torch.optim.SGD(
        net.parameters(), lr=settings.lr, momentum=settings.momentum, weight_decay=settings.l2
    )
    started = time.perf_counter()
    net.train()
    for epoch in range(1, settings.rounds + 1):
        rng = derive_rng(seed, EPOCH_KEY, epoch, rank) if settings.shuffle else None
        for batch in batches(n_train, settings.batch_size, rng):
            index = torch.from_numpy(batch)
            loss = torch.nn.functional.cross_entropy(net(*[b[index] for b in blocks]), y[index])
            opt.zero_grad()
            loss.backward()
            opt.step()
    epochs = time.perf_counter() - started
    net.eval()
    with torch.no_grad():
        predicted = net(*[b[n_train:] for b in blocks]).argmax(dim=1)
    accuracy = float((predicted == y[n_train:]).double().mean())
    return {"total_s": time.perf_counter() - T0, "epochs_s": epochs, "accuracy": accuracy}


def measure(kind: str, args: argparse.Namespace) -> dict[str, float]:
    """One variant in a fresh process."""
    command = [sys.executable, __file__, "--child", kind, "--rounds", str(args.rounds)]
    command += ["--bottom", args.bottom]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--bottom", choices=sorted(BOTTOMS), default="mlp")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many, interleaved")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", choices=["central", "consortium"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.child:
        run = run_central if args.child == "central" else run_consortium
        print(json.dumps(run(job(args))))
        return
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.repeat):
        for name in ("central", "consortium"):
            got = measure(name, args)
            print(
                f"  {name:<11} {got['total_s']:7.3f} s  epochs {got['epochs_s']:7.3f} s", flush=True
            )
            if got["total_s"] < best.get(name, {"total_s": math.inf})["total_s"]:
                best[name] = got
    central, ours = best["central"], best["consortium"]
    print()
    print(f"split NN on digits, {args.bottom} bottoms, 4 members, {args.rounds} epochs")
    print("| variant | total s | epochs s | accuracy |")
    print("| --- | ---: | ---: | ---: |")
    for name in ("central", "consortium"):
        r = best[name]
        print(f"| {name} | {r['total_s']:.3f} | {r['epochs_s']:.3f} | {r['accuracy']:.4f} |")
    ratio_total = ours["total_s"] / central["total_s"]
    ratio_epochs = ours["epochs_s"] / central["epochs_s"]
    print(f"ratio: {ratio_total:.2f}x end to end, {ratio_epochs:.2f}x the epochs alone")
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args), "best": best}, default=str))


if __name__ == "__main__":
    main()
