"""The compiled weighted fold (numba) against a float64 oracle, and WeightedSum with it
against WeightedSum with its numpy fold. Compiling takes seconds (then numba's disk
cache serves it): the module is marked slow."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from consortium.horizontal import compiled  # noqa: E402
from consortium.horizontal.aggregate import WeightedSum  # noqa: E402

pytestmark = pytest.mark.slow

# Several of the fold's blocks of columns and a part of one.
SIZE = 100_003
# WeightedSum folds float tensors of 2**18 elements or more with the compiled fold.
BIG = 1 << 18


def oracle(acc: np.ndarray, rows: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    return acc + sum(w * r.astype(np.float64) for r, w in zip(rows, weights, strict=True))


@pytest.mark.parametrize("count", [0, 1, 2, 3, 4, 5, 8, 17])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_fold_is_the_weighted_sum_in_float64(count, dtype):
    rng = np.random.default_rng(count)
    rows = [rng.standard_normal(SIZE).astype(dtype) for _ in range(count)]
    for row in rows[::2]:
        row.flags.writeable = False  # read-only rows (decoded replies) mix with others
    copies = [row.copy() for row in rows]
    weights = rng.integers(1, 5000, count).astype(np.float64)
    start = rng.standard_normal(SIZE)
    acc = start.copy()
    compiled.fold(acc, rows, weights)
    np.testing.assert_allclose(acc, oracle(start, rows, weights), rtol=1e-13, atol=1e-9)
    for row, copy in zip(rows, copies, strict=True):
        np.testing.assert_array_equal(row, copy)


def test_bad_arguments_are_refused():
    acc = np.zeros(10)
    with pytest.raises(ValueError, match="2 rows but 1 weights"):
        compiled.fold(acc, [np.zeros(10), np.zeros(10)], np.ones(1))
    with pytest.raises(ValueError, match="shape"):
        compiled.fold(acc, [np.zeros(11)], np.ones(1))
    with pytest.raises(ValueError, match="one dtype"):
        compiled.fold(acc, [np.zeros(10), np.zeros(10, np.float32)], np.ones(2))
    with pytest.raises(ValueError, match="float32 or float64"):
        compiled.fold(acc, [np.zeros(10, np.int64)], np.ones(1))
    with pytest.raises(ValueError, match="acc must be"):
        compiled.fold(np.zeros(10, np.float32), [np.zeros(10)], np.ones(1))


@pytest.mark.parametrize("count", [0, 3, 9])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_mean_pass_equals_a_division_after_a_fold_and_leaves_acc_alone(count, dtype):
    rng = np.random.default_rng(5)
    rows = [rng.standard_normal(SIZE).astype(np.float32) for _ in range(count)]
    weights = rng.random(count) * 10
    start = rng.standard_normal(SIZE)
    acc, out = start.copy(), np.empty(SIZE, dtype)
    compiled.fold(acc, rows, weights, out=out, total=7.5)
    np.testing.assert_array_equal(acc, start)
    compiled.fold(acc, rows, weights)
    want = np.empty(SIZE, dtype)
    np.divide(acc, 7.5, out=want)
    np.testing.assert_array_equal(out, want)  # the same rounding, bit for bit
    with pytest.raises(ValueError, match="out must be"):
        compiled.fold(acc, rows, weights, out=np.empty(SIZE, np.int64))


def replies(rng: np.random.Generator, like: dict[str, np.ndarray], n: int) -> list[dict]:
    out = []
    for _ in range(n):
        reply = {k: np.asarray(rng.standard_normal(v.shape) * 10, v.dtype) for k, v in like.items()}
        for arr in reply.values():
            arr.flags.writeable = False
        out.append(reply)
    return out


def weighted_means(like, updates, weights, *, compiled: bool) -> dict[str, np.ndarray]:
    acc = WeightedSum(like=like, compiled=compiled)
    for u, w in zip(updates, weights, strict=True):
        acc.add(u, w)
    assert acc.count == len(updates) and acc.total_weight == pytest.approx(sum(weights))
    return acc.mean()


def test_weighted_sum_folds_large_float_tensors_compiled_and_the_rest_with_numpy(monkeypatch):
    """More replies than are held (several folds); the compiled and numpy folds agree with
    the float64 oracle and with each other."""
    rng = np.random.default_rng(2)
    like = {
        "small": np.zeros((3, 5), np.float32),
        "big": np.zeros(BIG + 3, np.float32),
        "count": np.zeros((), np.int64),
        "big64": np.zeros((2, BIG // 2), np.float64),
        "bigint": np.zeros(BIG, np.int32),
    }
    updates = replies(rng, like, 70)
    weights = [float(w) for w in rng.integers(1, 100, len(updates))]
    real, folded = compiled.fold, []

    def spy(acc, rows, w, **options):
        folded.append((acc.size, len(rows)))
        real(acc, rows, w, **options)

    monkeypatch.setattr(compiled, "fold", spy)
    got = weighted_means(like, updates, weights, compiled=True)
    assert {size for size, _ in folded} == {BIG + 3, BIG}  # "big" and "big64"
    # every reply was read for "big", by the folds and the mean's pass
    assert sum(count for size, count in folded if size == BIG + 3) == len(updates)
    assert len(folded) > 2  # a fold and the mean's pass per tensor
    folded.clear()
    want = weighted_means(like, updates, weights, compiled=False)
    assert not folded
    total = sum(weights)
    for name, arr in like.items():
        exact = sum(w * u[name].astype(np.float64) for u, w in zip(updates, weights, strict=True))
        exact = exact / total
        assert got[name].dtype == arr.dtype and got[name].shape == arr.shape
        if arr.dtype == np.float64:  # nothing rounded to float32 on the way
            np.testing.assert_allclose(got[name], exact, rtol=1e-13, atol=1e-12)
            np.testing.assert_allclose(got[name], want[name], rtol=1e-13, atol=1e-12)
        elif arr.dtype.kind == "f":
            np.testing.assert_allclose(got[name], exact, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6)
        else:
            np.testing.assert_array_equal(got[name], want[name])


def test_a_reply_in_another_dtype_is_folded_with_numpy():
    rng = np.random.default_rng(3)
    like = {"w": np.zeros(BIG, np.float32)}
    updates = replies(rng, like, 4)
    updates[2] = {"w": updates[2]["w"].astype(np.float64)}
    weights = [1.0, 2.0, 3.0, 4.0]
    got = weighted_means(like, updates, weights, compiled=True)["w"]
    exact = sum(w * u["w"].astype(np.float64) for u, w in zip(updates, weights, strict=True))
    np.testing.assert_allclose(got, exact / 10.0, rtol=1e-6, atol=1e-6)


def test_a_weighted_sum_goes_on_after_its_mean():
    rng = np.random.default_rng(6)
    like = {"w": np.zeros(BIG, np.float32)}
    rows = [u["w"] for u in replies(rng, like, 5)]
    acc = WeightedSum(like=like)
    for r in rows[:3]:
        acc.add({"w": r}, 2.0)
    first = acc.mean()["w"]
    np.testing.assert_array_equal(acc.mean()["w"], first)  # asking twice changes nothing
    for r in rows[3:]:
        acc.add({"w": r}, 1.0)
    exact = (2 * sum(r.astype(np.float64) for r in rows[:3]) + sum(rows[3:])) / 8.0
    np.testing.assert_allclose(acc.mean()["w"], exact, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(first, 2 * sum(rows[:3]) / 6.0, rtol=1e-6, atol=1e-6)


def test_a_fold_that_fails_part_way_leaves_no_wrong_mean(monkeypatch):
    like = {"a": np.zeros(BIG, np.float32), "b": np.zeros(BIG, np.float32)}
    real, calls = compiled.fold, []

    def second_one_fails(*args, **options):
        calls.append(1)
        if len(calls) == 2:
            raise MemoryError("out of memory in the middle of a fold")
        real(*args, **options)

    monkeypatch.setattr(compiled, "fold", second_one_fails)
    acc = WeightedSum(like=like)
    reply = {k: np.ones_like(v) for k, v in like.items()}
    with pytest.raises(MemoryError):  # once the held replies are folded
        for _ in range(1000):
            acc.add(reply, 1.0)  # "a" gets the replies held, "b" does not
    with pytest.raises(RuntimeError, match="earlier fold"):
        acc.mean()
    with pytest.raises(RuntimeError, match="earlier fold"):
        acc.add(reply, 1.0)


def test_the_fold_compiles_without_a_disk_cache_where_none_can_be_written(monkeypatch):
    real, asked = numba.njit, []

    def njit(*args, **options):
        asked.append(options.get("cache", False))
        if options.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")
        return real(*args, **options)

    monkeypatch.setattr(numba, "njit", njit)
    try:
        importlib.reload(compiled)
        acc = np.zeros(SIZE)
        compiled.fold(acc, [np.ones(SIZE, np.float32)], np.array([2.0]))
        np.testing.assert_array_equal(acc, 2.0)
        assert asked == [True, False]
    finally:
        monkeypatch.undo()
        importlib.reload(compiled)  # the cached fold again, for the tests after this one
