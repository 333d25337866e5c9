from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from consortium.errors import ConfigError  # noqa: E402
from consortium.ml import (  # noqa: E402
    MLP,
    Model,
    TorchModel,
    build_model,
    load_dataset,
    standardize,
    torch_seeded,
    train_test_split,
)


def _batchnorm_net(seed: int) -> TorchModel:
    with torch_seeded(seed):
        module = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    return TorchModel(module=module)


def _iris() -> tuple[np.ndarray, np.ndarray]:
    ds = load_dataset("iris", seed=0)
    return ds.x, ds.y


def _fit(model: Model, seed: int, epochs: int = 2) -> dict[str, float]:
    x, y = _iris()
    return model.fit(x, y, epochs=epochs, batch_size=16, lr=0.05, rng=np.random.default_rng(seed))


def test_state_includes_buffers_and_keeps_dtypes() -> None:
    model = _batchnorm_net(0)
    assert isinstance(model, Model)
    _fit(model, 0)
    weights = model.get_weights()
    assert list(weights) == list(model.module.state_dict())
    assert {"1.running_mean", "1.running_var", "1.num_batches_tracked"} <= set(weights)
    assert weights["1.running_mean"].dtype == np.float32
    assert weights["0.weight"].dtype == np.float32
    assert weights["1.num_batches_tracked"].dtype == np.int64
    assert int(weights["1.num_batches_tracked"]) == 2 * 10  # 150 rows / 16 -> 10 batches
    assert not np.allclose(weights["1.running_mean"], 0.0)


def test_get_set_round_trip_including_buffers() -> None:
    trained = _batchnorm_net(0)
    _fit(trained, 0)
    weights = trained.get_weights()
    fresh = _batchnorm_net(1)
    assert not np.array_equal(fresh.get_weights()["0.weight"], weights["0.weight"])
    fresh.set_weights(weights)
    for name, arr in fresh.get_weights().items():
        np.testing.assert_array_equal(arr, weights[name], err_msg=name)
        assert arr.dtype == weights[name].dtype
    x, y = _iris()
    assert fresh.evaluate(x, y) == trained.evaluate(x, y)  # eval mode uses the running stats


def test_weights_are_copies() -> None:
    model = _batchnorm_net(0)
    weights = model.get_weights()
    before = {k: v.copy() for k, v in weights.items()}
    weights["0.weight"][:] = 5.0
    assert not np.array_equal(model.get_weights()["0.weight"], weights["0.weight"])
    _fit(model, 0)
    weights["0.weight"][:] = before["0.weight"]
    for name, arr in weights.items():
        np.testing.assert_array_equal(arr, before[name], err_msg=name)


def test_set_weights_names_the_bad_array() -> None:
    model = _batchnorm_net(0)
    good = model.get_weights()
    with pytest.raises(ValueError, match=r"'0\.weight' has dtype float64"):
        model.set_weights({**good, "0.weight": good["0.weight"].astype(np.float64)})
    with pytest.raises(ValueError, match=r"'1\.running_var' has shape"):
        model.set_weights({**good, "1.running_var": np.ones(9, np.float32)})
    missing = {k: v for k, v in good.items() if k != "1.num_batches_tracked"}
    with pytest.raises(ValueError, match=r"1\.num_batches_tracked"):
        model.set_weights(missing)


def test_read_only_inputs_do_not_warn() -> None:
    model = _batchnorm_net(0)
    weights = model.get_weights()
    for arr in weights.values():
        arr.flags.writeable = False
    x, y = _iris()
    x.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.set_weights(weights)
        model.fit(x, y, epochs=1, batch_size=32, lr=0.1, rng=np.random.default_rng(0))


def test_two_fits_with_the_same_generator_are_identical() -> None:
    runs = []
    for seed in (3, 3, 4):
        model = build_model("mlp", n_features=4, n_classes=3, seed=0, hidden=[16], dropout=0.3)
        assert isinstance(model, TorchModel) and model.stochastic
        stats = _fit(model, seed)
        runs.append((model.get_weights(), stats))
    for name in runs[0][0]:
        np.testing.assert_array_equal(runs[0][0][name], runs[1][0][name], err_msg=name)
    assert runs[0][1] == runs[1][1]
    assert not np.array_equal(runs[0][0]["layers.0.weight"], runs[2][0]["layers.0.weight"])


def test_fits_on_threads_repeat_exactly_and_leave_the_global_generator_alone() -> None:
    def train(seed: int, out: dict[int, dict[str, np.ndarray]]) -> None:
        model = build_model("mlp", n_features=4, n_classes=3, seed=seed, hidden=[32], dropout=0.5)
        _fit(model, seed, epochs=3)
        out[seed] = model.get_weights()

    alone: dict[int, dict[str, np.ndarray]] = {}
    for seed in range(4):
        train(seed, alone)
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    together: dict[int, dict[str, np.ndarray]] = {}
    threads = [threading.Thread(target=train, args=(seed, together)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert torch.equal(torch.rand(3), expected_draw)
    for seed in range(4):
        for name, arr in alone[seed].items():
            np.testing.assert_array_equal(together[seed][name], arr, err_msg=f"{seed} {name}")


def test_mlp_is_seeded_by_the_factory() -> None:
    a = build_model("mlp", n_features=4, n_classes=3, seed=1).get_weights()
    b = build_model("mlp", n_features=4, n_classes=3, seed=1).get_weights()
    c = build_model("mlp", n_features=4, n_classes=3, seed=2).get_weights()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["layers.0.weight"], c["layers.0.weight"])


def test_mlp_learns_digits() -> None:
    ds = load_dataset("digits", seed=0)
    train, test = standardize(*train_test_split(ds, test_fraction=0.25, seed=0))
    model = build_model("mlp", n_features=64, n_classes=10, seed=0, hidden=[64])
    first = model.fit(
        train.x, train.y, epochs=1, batch_size=32, lr=0.1, rng=np.random.default_rng(0)
    )
    last = model.fit(
        train.x, train.y, epochs=4, batch_size=32, lr=0.1, rng=np.random.default_rng(1)
    )
    assert last["loss"] < first["loss"]
    assert model.evaluate(test.x, test.y)["accuracy"] > 0.9


def test_mlp_shape_and_argument_checks() -> None:
    model = build_model("mlp", n_features=10, n_classes=4, seed=0, hidden=[8, 6])
    assert model.num_parameters() == (10 * 8 + 8) + (8 * 6 + 6) + (6 * 4 + 4)
    assert isinstance(model, TorchModel) and isinstance(model.module, MLP)
    assert not model.stochastic
    with pytest.raises(ConfigError, match="hidden"):
        build_model("mlp", n_features=10, n_classes=4, seed=0, hidden="64")
    with pytest.raises(ConfigError, match="dropout"):
        build_model("mlp", n_features=10, n_classes=4, seed=0, dropout=1.0)
    with pytest.raises(ConfigError, match="classification"):
        build_model("mlp", n_features=10, n_classes=None, seed=0)
    with pytest.raises(ConfigError, match="'mlp' has no argument 'layers'"):
        build_model("mlp", n_features=10, n_classes=4, seed=0, layers=[3])


def test_regression_module_against_sklearn_metrics() -> None:
    from sklearn.metrics import mean_squared_error, r2_score

    ds = load_dataset("diabetes", seed=0)
    train, test = standardize(*train_test_split(ds, test_fraction=0.25, seed=0))
    with torch_seeded(0):
        module = nn.Linear(10, 1)
    model = TorchModel(module=module, task="regression")
    model.fit(train.x, train.y, epochs=50, batch_size=32, lr=0.01, rng=np.random.default_rng(0))
    metrics = model.evaluate(test.x, test.y)
    with torch.no_grad():
        predicted = module(torch.from_numpy(test.x)).numpy()[:, 0]
    assert metrics["loss"] == pytest.approx(mean_squared_error(test.y, predicted), rel=1e-4)
    assert metrics["r2"] == pytest.approx(r2_score(test.y, predicted), rel=1e-4)
    assert metrics["r2"] > 0.3


def test_a_last_batch_of_one_row_is_merged_for_batchnorm() -> None:
    model = _batchnorm_net(0)
    x, y = _iris()
    stats = model.fit(x[:33], y[:33], epochs=1, batch_size=16, lr=0.1, rng=np.random.default_rng(0))
    assert np.isfinite(stats["loss"])
    assert int(model.get_weights()["1.num_batches_tracked"]) == 2
