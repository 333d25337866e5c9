"""Local training of your own: a plain PyTorch loop (Adam, gradient clipping) as the client.

Each trainer receives the global model, runs this function on its own rows, and sends the
result back; the aggregator averages with FedAvg and scores the model on its test rows.
The network is the job's ``model:`` (here ``mlp``), so the aggregator and the trainers agree
on its weights; the loop is yours.

    python examples/custom_torch_client.py            # five trainers on digits, in-process
    python examples/custom_torch_client.py --rounds 3

Needs PyTorch (``pip install 'consortium[torch]'``).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

import numpy as np
import torch

import consortium
from consortium.client import FitConfig, LocalData, register_client


@register_client("torch_adam")
def torch_adam(
    weights: Mapping[str, np.ndarray], data: LocalData, config: FitConfig, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    if "model" not in config.memory:  # this party's memory, kept between rounds
        config.memory["model"] = data.model_factory()
    model = config.memory["model"]
    model.set_weights(weights)
    net: torch.nn.Module = model.module
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
    x = torch.from_numpy(data.train.x)
    y = torch.from_numpy(data.train.y)
    order = torch.Generator().manual_seed(int(rng.integers(2**62)))  # reproducible batches
    net.train()
    losses = []
    for _ in range(config.epochs):
        for rows in torch.randperm(len(x), generator=order).split(config.batch_size):
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x[rows]), y[rows])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm=1.0)
            optimiser.step()
            losses.append(loss.item())
    return model.get_weights(), {"loss": float(np.mean(losses))}


JOB = {
    "name": "custom-torch-client",
    "seed": 7,
    "topology": {"template": "star", "roles": {"aggregator": {}, "trainer": {"count": 5}}},
    "data": {"dataset": {"name": "digits"}},
    "model": {"name": "mlp", "args": {"hidden": [32]}},
    "algorithm": {
        "rounds": 5,
        "client": {"name": "torch_adam"},
        "local": {"epochs": 1, "batch_size": 32, "lr": 0.005},
    },
    "tracking": {"mlflow": {"enabled": False}},
}


def main(argv: list[str] | None = None) -> consortium.RunResult:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=None, help="run directory (default: runs/...)")
    args = parser.parse_args(argv)
    result = consortium.run(JOB, overrides=[f"algorithm.rounds={args.rounds}"], out=args.out)
    print(f"{result.status}: accuracy {result.metrics['accuracy']:.3f}, in {result.run_dir}")
    return result


if __name__ == "__main__":
    main()
