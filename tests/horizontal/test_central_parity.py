"""Done-means of horizontal FL: IID FedAvg ends within one accuracy point of the same model
trained centrally on the pooled training rows.

The federated side is a job run in-process through ``consortium.run``. The central side takes
its data from the job itself (``bind_data``: the same dataset, split, standardisation and
model factory the parties use), pools the trainers' rows and trains one model for as many
epochs as each row saw in the federation (rounds x local epochs), with the same batch size,
step and penalty, and evaluates it on the aggregator's test rows. A third, independent
reference is the exact optimum of the same penalised loss, solved by scikit-learn: both
models must be near it, so the comparison is between two well-trained models, not two
half-trained ones that happen to agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import consortium
from consortium.jobs import bind_data, parse_job
from consortium.ml import read_card
from consortium.npz import load_arrays

N_TRAINERS = 5
L2 = 3e-2  # a strongly convex loss: one optimum, which both sides come close to
LOCAL = {"epochs": 5, "batch_size": 32, "lr": 0.1}

# (dataset, test fraction, rounds). Over job seeds 0-39 these settings kept FedAvg within one
# point of central training for 39 (digits) and 38 (breast_cancer) seeds, the misses by one
# test row; both sides stayed within two points of the exact optimum for every seed.
CASES = [("digits", 0.2, 20), ("breast_cancer", 0.3, 20)]


def _job(dataset: str, test_fraction: float, rounds: int, **model: Any) -> dict[str, Any]:
    return {
        "name": f"parity-{dataset}",
        "seed": 5,
        "topology": {
            "template": "star",
            "roles": {"aggregator": {"count": 1}, "trainer": {"count": N_TRAINERS}},
        },
        "data": {
            "dataset": {"name": dataset},
            "test_fraction": test_fraction,
            "standardize": True,
            "roles": {
                "trainer": {"split": "train", "partitioner": {"name": "iid"}},
                "aggregator": {"split": "test"},
            },
        },
        "model": model or {"name": "logreg", "args": {"l2": L2}},
        "algorithm": {
            "protocol": "horizontal",
            "strategy": {"name": "fedavg"},
            "selection": {"name": "all"},
            "rounds": rounds,
            "local": dict(LOCAL),
        },
        "tracking": {"console": False, "mlflow": {"enabled": False}},
    }


@pytest.mark.parametrize(("dataset", "test_fraction", "rounds"), CASES)
def test_iid_fedavg_matches_central_training(
    tmp_path: Path, dataset: str, test_fraction: float, rounds: int
) -> None:
    from sklearn.linear_model import LogisticRegression

    job = _job(dataset, test_fraction, rounds)
    federated = consortium.run(job, out=tmp_path / "run", quiet=True)
    assert federated.ok, federated.error
    assert federated.rounds_completed == rounds

    loaded = parse_job(job)
    data = bind_data(loaded)
    trainers = [data[name] for name in loaded.topology.with_role("trainer")]
    assert len(trainers) == N_TRAINERS
    x = np.concatenate([t.train.x for t in trainers])
    y = np.concatenate([t.train.y for t in trainers])
    test = data[loaded.topology.with_role("aggregator")[0]].test
    assert len(x) + len(test.y) == {"digits": 1797, "breast_cancer": 569}[dataset]
    sizes = [len(t.train.y) for t in trainers]
    assert max(sizes) - min(sizes) <= 1  # iid: equal shares of the pooled rows

    local = loaded.algorithm.local
    central = data["trainer-0"].model_factory()  # same factory, same start as the parties
    central.fit(
        x,
        y,
        epochs=rounds * local.epochs,
        batch_size=local.batch_size,
        lr=local.lr,
        rng=np.random.default_rng(0),
    )
    central_acc = central.evaluate(test.x, test.y)["accuracy"]
    federated_acc = federated.metrics["accuracy"]

    # the exact optimum of mean cross-entropy + l2/2 ||W||^2 (sklearn's penalty is
    # ||W||^2 / (2 C n), so C = 1 / (l2 n))
    exact = LogisticRegression(C=1.0 / (L2 * len(y)), tol=1e-10, max_iter=10_000).fit(x, y)
    exact_acc = float(exact.score(test.x, test.y))

    assert 0.93 < exact_acc < 1.0  # a problem where accuracy can still differ
    assert abs(central_acc - exact_acc) <= 0.02  # both well trained...
    assert abs(federated_acc - exact_acc) <= 0.02
    assert abs(federated_acc - central_acc) <= 0.01  # ...and within one point of each other


_SK_LOCAL = {"epochs": 2, "batch_size": 32, "lr": 0.05}
_CNN = {"channels": [8, 16], "hidden": 32}
_CNN_LOCAL = {"epochs": 3, "batch_size": 32, "lr": 0.2}


@pytest.mark.parametrize(
    ("model", "local"),
    [
        pytest.param({"name": "sk_sgd", "args": {"alpha": 1e-3}}, _SK_LOCAL, id="sk_sgd"),
        pytest.param({"name": "sk_logreg", "args": {"C": 0.5}}, _SK_LOCAL, id="sk_logreg"),
        pytest.param({"name": "cnn", "args": _CNN}, _CNN_LOCAL, id="cnn"),
        pytest.param(
            {"name": "cnn", "args": {**_CNN, "batch_norm": True}},
            _CNN_LOCAL,
            id="cnn-batchnorm",
        ),
    ],
)
def test_a_job_file_can_name_the_new_models(
    tmp_path: Path, model: dict[str, Any], local: dict[str, Any]
) -> None:
    """sk_sgd, sk_logreg and cnn train by FedAvg from a job and end well above chance."""
    if model["name"] == "cnn":
        pytest.importorskip("torch")
    job = _job("digits", 0.2, 3, **model)
    job["algorithm"]["local"] = dict(local)
    result = consortium.run(job, out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    assert result.metrics["accuracy"] > 0.7  # chance is 0.1
    expected = bind_data(parse_job(job))["trainer-0"].model_factory().get_weights()
    card, saved = read_card(load_arrays(tmp_path / "run" / "model.npz"), "model.npz")
    assert card.model == model["name"] and set(saved) == set(expected)
    for name, arr in expected.items():
        assert saved[name].dtype == arr.dtype and saved[name].shape == arr.shape, name
