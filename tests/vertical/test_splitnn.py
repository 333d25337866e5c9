"""Split neural networks train exactly as the same network trained in one place."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from threadpoolctl import threadpool_limits  # noqa: E402

from consortium.jobs import parse_job, run  # noqa: E402
from consortium.runtime import derive_seed  # noqa: E402
from consortium.vertical import NET_KEY, TOP_KEY, build_net, central_network  # noqa: E402

CASES = {
    "mlp-concat": ({"name": "mlp", "args": {"hidden": [16]}}, "concat"),
    "resnet-sum": ({"name": "resnet", "args": {"channels": [4, 8]}}, "sum"),
    "efficientnet-mean": (
        {"name": "efficientnet", "args": {"channels": [4, 8], "head": 8}},
        "mean",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_split_training_equals_central_training(tmp_path, vfl, case):
    bottom, combine = CASES[case]
    raw = vfl.example(
        "vfl_splitnn_mnist",
        topology__roles__member={"count": 2},
        model__args={"bottom": bottom, "embedding": 8, "combine": combine, "top": {"name": "mlp"}},
        algorithm__rounds=2,
        algorithm__batch_size=64,
        algorithm__l2=1e-4,
        algorithm__parts_dir=str(tmp_path / "parts"),
    )
    result = run(copy.deepcopy(raw), out=tmp_path / "run", quiet=True)
    assert result.ok, result.error

    # the same network, initialised the same way, trained on the pooled strips
    job = parse_job(copy.deepcopy(raw))
    pool = vfl.pooled(raw)
    settings = job.algorithm
    strips = [(8, 4), (8, 4)]
    bottoms = [
        build_net(
            bottom["name"],
            bottom["args"],
            in_features=32,
            out_features=8,
            image_shape=shape,
            seed=derive_seed(job.spec.seed, NET_KEY, job.topology.party(name).rank),
        )
        for name, shape in zip(pool.parties, strips, strict=True)
    ]
    top = build_net(
        "mlp",
        {},
        in_features=16 if combine == "concat" else 8,
        out_features=10,
        image_shape=None,
        seed=derive_seed(job.spec.seed, TOP_KEY),
    )
    net = central_network(bottoms, top, combine=combine)
    opt = torch.optim.SGD(
        net.parameters(), lr=settings.lr, momentum=settings.momentum, weight_decay=settings.l2
    )
    blocks = [torch.from_numpy(b.astype(np.float32)) for b in pool.blocks]
    labels = torch.from_numpy(pool.y)
    net.train()
    # The run's parties compute on one thread each (the in-process launcher's budget when
    # parties share the cores); so does this, so that reductions add in the same order and
    # no ReLU sits on the other side of zero by a rounding.
    with threadpool_limits(limits=1):
        for epoch in vfl.schedule(raw, pool.n_train):
            for rows in epoch:
                index = torch.from_numpy(rows)
                loss = torch.nn.functional.cross_entropy(
                    net(*[b[index] for b in blocks]), labels[index]
                )
                opt.zero_grad()
                loss.backward()
                opt.step()

    with np.load(tmp_path / "run" / "model.npz") as saved:
        for key, value in top.state_dict().items():
            np.testing.assert_allclose(saved[f"top.{key}"], value.numpy(), rtol=1e-4, atol=1e-5)
    for name, module in zip(pool.parties, bottoms, strict=True):
        with np.load(tmp_path / "parts" / f"{name}.npz") as saved:
            for key, value in module.state_dict().items():
                np.testing.assert_allclose(saved[key], value.numpy(), rtol=1e-4, atol=1e-5)
    net.eval()
    with torch.no_grad(), threadpool_limits(limits=1):
        test = torch.from_numpy(np.arange(pool.n_train, len(pool.y)))
        predicted = net(*[b[test] for b in blocks]).argmax(dim=1).numpy()
    central = float(np.mean(predicted == pool.y[pool.n_train :]))
    assert result.metrics["accuracy"] == pytest.approx(central, abs=1e-9)


def test_a_bottom_refuses_a_gradient_of_another_shape():
    """The backward pass multiplies the output by the gradient: a gradient that would
    broadcast (one column, or one row) is refused, not silently stretched."""
    from consortium.vertical.splitnn import TorchBottom

    net = build_net("mlp", {"hidden": [4]}, in_features=3, out_features=2, image_shape=None, seed=1)
    bottom = TorchBottom(net, lr=0.1, momentum=0.0, l2=0.0)
    for bad in (np.ones((5, 1)), np.ones((1, 2))):
        bottom.forward(np.ones((5, 3)), train=True)
        with pytest.raises(ValueError, match="shape"):
            bottom.backward(bad)
    before = [p.detach().clone() for p in net.parameters()]
    bottom.forward(np.ones((5, 3)), train=True)
    bottom.backward(np.ones((5, 2)))
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
