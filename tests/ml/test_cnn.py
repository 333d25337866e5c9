"""The ``cnn`` model: shapes for 8x8 and 28x28 images, the state with BatchNorm buffers,
determinism, argument checks, and learning on digits."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from consortium.errors import ConfigError  # noqa: E402
from consortium.ml import (  # noqa: E402
    CNN,
    MODELS,
    Model,
    TorchModel,
    build_model,
    load_dataset,
    standardize,
    train_test_split,
)


def _cnn(**args: object) -> TorchModel:
    args.setdefault("n_features", 64)
    args.setdefault("n_classes", 10)
    args.setdefault("seed", 0)
    model = build_model("cnn", **args)  # type: ignore[arg-type]
    assert isinstance(model, TorchModel) and isinstance(model, Model)
    return model


def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    train, test = standardize(
        *train_test_split(load_dataset("digits", seed=0), test_fraction=0.25, seed=0)
    )
    return train.x, train.y, test.x, test.y


def test_registered() -> None:
    assert "cnn" in MODELS.names()


@pytest.mark.parametrize(("side", "pooled"), [(8, 2), (28, 7), (5, 1)])
def test_shapes_for_square_images(side: int, pooled: int) -> None:
    model = _cnn(n_features=side * side, channels=[4, 6], hidden=12)
    module = model.module
    assert isinstance(module, CNN) and module.side == side
    shapes = {name: arr.shape for name, arr in model.get_weights().items()}
    assert shapes == {
        "features.0.weight": (4, 1, 3, 3),
        "features.0.bias": (4,),
        "features.3.weight": (6, 4, 3, 3),
        "features.3.bias": (6,),
        "head.1.weight": (12, 6 * pooled * pooled),
        "head.1.bias": (12,),
        "head.3.weight": (10, 12),
        "head.3.bias": (10,),
    }
    assert model.num_parameters() == sum(int(np.prod(s)) for s in shapes.values())
    x = np.random.default_rng(0).normal(size=(5, side * side)).astype(np.float32)
    with torch.no_grad():
        logits = module(torch.from_numpy(x))
    assert logits.shape == (5, 10)
    # the flat row is read row-major as a side x side image, as Dataset.image_shape says
    image = torch.from_numpy(x.reshape(5, 1, side, side))
    with torch.no_grad():
        np.testing.assert_array_equal(module.head(module.features(image)), logits)


def test_one_block_and_three_blocks() -> None:
    one = _cnn(channels=[3], hidden=5)
    assert one.get_weights()["head.1.weight"].shape == (5, 3 * 4 * 4)
    three = _cnn(n_features=784, channels=[2, 2, 2], hidden=5)
    assert three.get_weights()["head.1.weight"].shape == (5, 2 * 3 * 3)


def test_state_round_trip_with_batchnorm_buffers() -> None:
    x, y, tx, ty = _digits()
    trained = _cnn(batch_norm=True, channels=[4, 8], hidden=16)
    trained.fit(x, y, epochs=1, batch_size=64, lr=0.05, rng=np.random.default_rng(0))
    weights = trained.get_weights()
    buffers = {"running_mean", "running_var", "num_batches_tracked"}
    for block in ("features.1", "features.5"):
        assert {f"{block}.{b}" for b in buffers} <= set(weights)
        assert weights[f"{block}.running_mean"].dtype == np.float32
        assert weights[f"{block}.num_batches_tracked"].dtype == np.int64
        assert int(weights[f"{block}.num_batches_tracked"]) == -(-len(x) // 64)
        assert not np.allclose(weights[f"{block}.running_var"], 1.0)
    assert "features.0.bias" not in weights  # the convolution before BatchNorm has no bias
    fresh = _cnn(batch_norm=True, channels=[4, 8], hidden=16, seed=3)
    assert not np.array_equal(
        fresh.get_weights()["features.0.weight"], weights["features.0.weight"]
    )
    fresh.set_weights(weights)
    for name, arr in fresh.get_weights().items():
        np.testing.assert_array_equal(arr, weights[name], err_msg=name)
        assert arr.dtype == weights[name].dtype
    # evaluation uses the running statistics: equal only if the buffers came across
    assert fresh.evaluate(tx, ty) == trained.evaluate(tx, ty)
    moved = {**weights, "features.1.running_mean": weights["features.1.running_mean"] + 1.0}
    fresh.set_weights(moved)
    assert fresh.evaluate(tx, ty)["loss"] != trained.evaluate(tx, ty)["loss"]


def test_seeded_build_and_fit_repeat() -> None:
    x, y, _, _ = _digits()
    runs = []
    for build_seed, fit_seed in ((1, 5), (1, 5), (2, 5), (1, 6)):
        model = _cnn(seed=build_seed, channels=[4, 8], hidden=16, dropout=0.25)
        assert model.stochastic
        before = model.get_weights()["features.0.weight"]
        stats = model.fit(
            x[:300], y[:300], epochs=1, batch_size=32, lr=0.05, rng=np.random.default_rng(fit_seed)
        )
        runs.append((before, model.get_weights()["features.0.weight"], stats))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert runs[0][2] == runs[1][2]
    assert not np.array_equal(runs[0][0], runs[2][0])  # another build seed
    assert not np.array_equal(runs[0][1], runs[3][1])  # another batch order and dropout


def test_learns_digits_beyond_chance() -> None:
    x, y, tx, ty = _digits()
    model = _cnn(channels=[8, 16], hidden=32, batch_norm=True)
    first = model.evaluate(tx, ty)
    model.fit(x, y, epochs=5, batch_size=32, lr=0.1, rng=np.random.default_rng(0))
    metrics = model.evaluate(tx, ty)
    assert metrics["loss"] < first["loss"]
    assert metrics["accuracy"] > 0.9  # chance is 0.1


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ({"n_features": 63}, "63 features is not a square"),
        ({"n_features": 30}, "not a square"),
        ({"channels": []}, "channels"),
        ({"channels": [8, 0]}, "channels"),
        ({"channels": "16"}, "channels"),
        ({"channels": [4, 4, 4, 4]}, "at most 3 entries in channels"),
        ({"hidden": 0}, "hidden"),
        ({"hidden": [64]}, "hidden"),
        ({"dropout": 1.0}, "dropout"),
        ({"batch_norm": "yes"}, "batch_norm"),
        ({"n_classes": None}, "classification"),
        ({"kernel": 5}, "'cnn' has no argument 'kernel'"),
    ],
)
def test_bad_arguments_are_named(args: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _cnn(**args)
