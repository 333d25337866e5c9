"""The compiled weighted fold (numba) against a float64 oracle and the numpy fold."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

from consortium.horizontal import _spares, aggregate, compiled
from consortium.horizontal.aggregate import WeightedSum

# blocks that do not divide the columns, and a last block whose inner loop runs whole
# 64-column steps (with and without the prefetch) and then a tail
SIZE = 2 * compiled._BLOCK + 1000


def _oracle(acc, rows, weights):
    return acc + sum(w * r.astype(np.float64) for r, w in zip(rows, weights, strict=True))


@pytest.mark.parametrize("count", [0, 1, 4, 7, 8, 9, 12, 17])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_fold_is_the_weighted_sum_in_float64(count, dtype):
    rng = np.random.default_rng(count)
    rows = [rng.standard_normal(SIZE).astype(dtype) for _ in range(count)]
    for row in rows[::2]:
        row.flags.writeable = False  # read-only rows (decoded replies) mix with others
    weights = rng.integers(1, 5000, count).astype(np.float64)
    start = rng.standard_normal(SIZE)
    acc = start.copy()
    compiled.fold(acc, rows, weights)
    np.testing.assert_allclose(acc, _oracle(start, rows, weights), rtol=1e-13, atol=1e-9)


def test_rows_of_mixed_dtypes_are_folded_in_float64():
    rng = np.random.default_rng(1)
    rows = [rng.standard_normal(SIZE).astype(np.float32), rng.standard_normal(SIZE)]
    rows.append(rng.integers(-5, 5, SIZE))
    weights = np.array([2.0, 3.0, 0.5])
    acc = np.zeros(SIZE)
    compiled.fold(acc, rows, weights)
    np.testing.assert_allclose(acc, _oracle(np.zeros(SIZE), rows, weights), rtol=1e-13)


def test_bad_arguments_are_refused():
    acc = np.zeros(10)
    with pytest.raises(ValueError, match="2 rows but 1 weights"):
        compiled.fold(acc, [np.zeros(10), np.zeros(10)], np.ones(1))
    with pytest.raises(ValueError, match="shape"):
        compiled.fold(acc, [np.zeros(11)], np.ones(1))


def test_weighted_sum_folds_big_tensors_compiled_and_small_ones_with_numpy(monkeypatch):
    rng = np.random.default_rng(2)
    big = aggregate._COMPILED_MIN
    like = {
        "small": np.zeros((3, 5), np.float32),
        "big": np.zeros(big + 3, np.float32),
        "count": np.zeros((), np.int64),
        "big64": np.zeros((2, big // 2), np.float64),
    }

    def reply():
        return {k: rng.standard_normal(v.shape).astype(v.dtype) * 10 for k, v in like.items()}

    replies = [reply() for _ in range(aggregate._HOLD + 5)]
    weights = rng.integers(1, 100, len(replies)).astype(np.float64)

    def mean():
        acc = WeightedSum(like=like)
        for r, w in zip(replies, weights, strict=True):
            acc.add(r, w)
        return acc, acc.mean()

    fast, got = mean()
    assert [fast._layout.names[i] for i in fast._compiled] == ["big", "big64"]
    monkeypatch.setattr(compiled, "available", lambda: False)
    slow, want = mean()
    assert slow._compiled == []
    for name, arr in like.items():
        exact = sum(w * r[name].astype(np.float64) for r, w in zip(replies, weights, strict=True))
        exact = exact / weights.sum()
        assert got[name].dtype == arr.dtype and got[name].shape == arr.shape
        if arr.dtype == np.float64:  # nothing rounded to float32 on the way
            np.testing.assert_allclose(got[name], exact, rtol=1e-13, atol=1e-12)
            np.testing.assert_allclose(got[name], want[name], rtol=1e-13, atol=1e-12)
        elif arr.dtype.kind == "f":
            np.testing.assert_allclose(got[name], exact, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6)
        else:
            np.testing.assert_array_equal(got[name], want[name])


def test_fewer_replies_are_held_when_the_model_is_large(monkeypatch):
    monkeypatch.setattr(aggregate, "_HOLD_BYTES", 3 * 4 * 1000)
    assert WeightedSum(like={"w": np.zeros(1000, np.float32)})._hold == 3
    assert WeightedSum(like={"w": np.zeros(10**6, np.float32)})._hold == 1
    assert WeightedSum(like={"w": np.zeros(10, np.float32)})._hold == aggregate._HOLD
    # four or more: rounded down to a multiple of four (the kernel's row groups)
    monkeypatch.setattr(aggregate, "_HOLD_BYTES", 53 * 4 * 1000)
    assert WeightedSum(like={"w": np.zeros(1000, np.float32)})._hold == 52
    monkeypatch.setattr(aggregate, "_HOLD_BYTES", 7 * 4 * 1000)
    assert WeightedSum(like={"w": np.zeros(1000, np.float32)})._hold == 4


@pytest.mark.parametrize("count", [0, 3, 9, 12])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_mean_written_in_the_same_pass_equals_a_division_after_it(count, dtype):
    rng = np.random.default_rng(5)
    rows = [rng.standard_normal(SIZE).astype(np.float32) for _ in range(count)]
    weights = rng.random(count) * 10
    start = rng.standard_normal(SIZE)
    acc, mean = start.copy(), np.empty(SIZE, dtype)
    compiled.fold(acc, rows, weights, mean=mean, total=7.5)
    plain = start.copy()
    compiled.fold(plain, rows, weights)
    np.testing.assert_array_equal(acc, plain)
    want = np.empty(SIZE, dtype)
    np.divide(plain, 7.5, out=want, casting="same_kind")
    np.testing.assert_array_equal(mean, want)  # the same rounding, bit for bit
    with pytest.raises(ValueError, match="mean must be"):
        compiled.fold(acc, rows, weights, mean=np.empty(SIZE, np.int64))


def test_a_weighted_sum_goes_on_after_its_mean():
    rng = np.random.default_rng(6)
    like = {"w": np.zeros(aggregate._COMPILED_MIN, np.float32)}
    replies = [rng.standard_normal(like["w"].size).astype(np.float32) for _ in range(5)]
    acc = WeightedSum(like=like)
    for r in replies[:3]:
        acc.add({"w": r}, 2.0)
    first = acc.mean()["w"]
    np.testing.assert_array_equal(acc.mean()["w"], first)  # asking twice changes nothing
    for r in replies[3:]:
        acc.add({"w": r}, 1.0)
    exact = (2 * sum(r.astype(np.float64) for r in replies[:3]) + sum(replies[3:])) / 8.0
    np.testing.assert_allclose(acc.mean()["w"], exact, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(first, 2 * sum(replies[:3]) / 6.0, rtol=1e-6, atol=1e-6)


def test_a_fresh_fold_ignores_what_the_accumulator_held():
    rng = np.random.default_rng(7)
    rows = [rng.standard_normal(SIZE).astype(np.float32) for _ in range(9)]
    weights = rng.random(9)
    acc = np.full(SIZE, 1e6)  # e.g. pages never written: must not be read
    compiled.fold(acc, rows, weights, fresh=True)
    np.testing.assert_allclose(acc, _oracle(np.zeros(SIZE), rows, weights), rtol=1e-13, atol=1e-12)
    acc = np.full(SIZE, 1e6)
    compiled.fold(acc, [], np.empty(0), fresh=True)
    assert not acc.any()


def test_a_fold_that_fails_part_way_leaves_no_wrong_mean(monkeypatch):
    like = {
        "a": np.zeros(aggregate._COMPILED_MIN, np.float32),
        "b": np.zeros(aggregate._COMPILED_MIN, np.float32),
    }
    acc = WeightedSum(like=like)
    real, calls = compiled.fold, []

    def second_one_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise MemoryError("out of memory in the middle of a fold")
        return real(*args, **kwargs)

    monkeypatch.setattr(compiled, "fold", second_one_fails)
    acc.add({k: np.ones_like(v) for k, v in like.items()}, 1.0)
    with pytest.raises(MemoryError):
        acc.mean()  # "a" got the reply, "b" did not
    with pytest.raises(RuntimeError, match="earlier fold"):
        acc.mean()
    with pytest.raises(RuntimeError, match="earlier fold"):
        acc.add({k: np.ones_like(v) for k, v in like.items()}, 1.0)


def test_the_kernel_compiles_without_a_disk_cache_where_none_can_be_written(monkeypatch):
    import numba

    real, asked = numba.njit, []

    def njit(fn, **options):
        asked.append(options["cache"])
        if options["cache"]:
            raise RuntimeError("cannot cache function: no locator available")
        return real(fn, **options)

    compiled._kernel.cache_clear()
    monkeypatch.setattr(numba, "njit", njit)
    try:
        acc = np.zeros(SIZE)
        compiled.fold(acc, [np.ones(SIZE, np.float32)], np.array([2.0]))
        np.testing.assert_array_equal(acc, 2.0)
        assert asked == [True, False]
    finally:
        compiled._kernel.cache_clear()  # the next test compiles (or loads) the cached one


@pytest.mark.parametrize(
    "p", [1000, aggregate._COMPILED_MIN], ids=["numpy-fold", "compiled-when-installed"]
)
def test_a_finished_sums_accumulator_is_reused_and_what_it_held_ignored(p):
    """The next sum of the same size takes the last one's accumulator (no fresh pages to
    map) and overwrites it in its first fold: stale NaNs left in it change nothing."""
    like = {"w": np.zeros(p, np.float32), "b": np.zeros(3)}
    rng = np.random.default_rng(3)
    first = WeightedSum(like=like)
    first.add({"w": np.ones(p, np.float32), "b": np.ones(3)}, 1.0)
    first.mean()
    buf = first._acc
    buf[:] = np.nan
    del first
    second = WeightedSum(like=like)
    assert second._acc is buf
    updates = [
        {"w": rng.standard_normal(p).astype(np.float32), "b": rng.standard_normal(3)}
        for _ in range(5)
    ]
    weights = [float(k + 1) for k in range(5)]
    for u, w in zip(updates, weights, strict=True):
        second.add(u, w)
    mean = second.mean()
    for name in like:
        exact = sum(w * u[name].astype(np.float64) for u, w in zip(updates, weights, strict=True))
        np.testing.assert_allclose(mean[name], exact / sum(weights), rtol=1e-6, atol=1e-7)


def test_spare_accumulators_are_two_a_size_within_a_byte_budget(monkeypatch):
    monkeypatch.setattr(_spares, "SPARE_BYTES", 3 * 800)
    spares = _spares.SpareBuffers()
    a, b, c = (np.empty(100) for _ in range(3))  # 800 bytes each
    for buf in (a, b, c):
        spares.give(buf)
    assert spares.take(100) is b and spares.take(100) is a  # two kept, the latest first
    fresh = spares.take(100)
    assert fresh is not c and fresh.shape == (100,) and fresh.dtype == np.float64
    d, e = np.empty(200), np.empty(50)  # 1600 and 400 bytes
    spares.give(a)
    spares.give(d)  # 2400 bytes: at the budget
    spares.give(e)  # over it: the oldest size goes
    assert spares.take(100) is not a
    assert spares.take(200) is d and spares.take(50) is e
    spares.give(np.empty(1000))  # 8000 bytes: more than the budget, not kept
    assert spares.take(1000) is not None and not spares._free
