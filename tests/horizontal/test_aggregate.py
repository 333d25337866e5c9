"""The aggregation arithmetic against plain-loop oracles.

WeightedSum against a Python loop over the replies in float64; UpdateStack's median and
trimmed mean against sorted lists of each coordinate's values. The tensors here are too
small for the compiled fold: WeightedSum folds them with numpy, numba or not
(``test_compiled.py`` covers the compiled fold).
"""

from __future__ import annotations

import statistics
import sys
import tracemalloc
from collections.abc import Mapping

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import consortium.horizontal
from consortium.horizontal.aggregate import UpdateStack, WeightedSum

Model = dict[str, np.ndarray]

SHAPES = [(), (0,), (1,), (3,), (2, 3), (4, 0, 2), (5, 1)]
DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32]
# More replies than WeightedSum holds before it folds (64 for a small model): several folds.
MANY = 150


@st.composite
def layouts(draw: st.DrawFn, dtypes: list[type] = DTYPES) -> dict[str, tuple[tuple, type]]:
    n = draw(st.integers(1, 4))
    return {
        f"t{i}": (draw(st.sampled_from(SHAPES)), draw(st.sampled_from(dtypes))) for i in range(n)
    }


def make(
    rng: np.random.Generator, layout: Mapping[str, tuple[tuple, type]], read_only: bool = True
) -> Model:
    out = {}
    for name, (shape, dtype) in layout.items():
        if np.dtype(dtype).kind == "f":
            arr = np.asarray(rng.standard_normal(shape) * 10.0 ** rng.integers(-2, 3), dtype)
        else:
            arr = np.asarray(rng.integers(-1000, 1000, shape), dtype)
        arr.flags.writeable = not read_only
        out[name] = arr
    return out


def weighted_oracle(updates: list[Model], weights: list[float]) -> dict[str, np.ndarray]:
    """sum_k w_k x_k / sum_k w_k, one element and one reply at a time, in float64."""
    total = sum(weights)
    out = {}
    for name, like in updates[0].items():
        acc = np.zeros(like.shape)
        for idx in np.ndindex(*like.shape):
            acc[idx] = sum(w * float(u[name][idx]) for u, w in zip(updates, weights, strict=True))
        out[name] = acc / total
    return out


def scale(updates: list[Model], weights: list[float]) -> dict[str, np.ndarray]:
    """sum_k w_k |x_k| / sum_k w_k: what rounding errors are relative to."""
    total = sum(weights)
    return {
        name: sum(
            w * np.abs(u[name].astype(np.float64)) for u, w in zip(updates, weights, strict=True)
        )
        / total
        for name in updates[0]
    }


def assert_mean_close(got: Model, exact: Model, size: Model, n: int) -> None:
    for name, want in exact.items():
        arr = got[name]
        assert isinstance(arr, np.ndarray) and arr.shape == want.shape, name
        dtype = arr.dtype
        if dtype.kind == "f":
            # one rounding to the tensor's dtype, plus the float64 sum's error bound
            eps = float(np.finfo(dtype).eps)
            tol = 0.5 * eps * np.abs(want) + 2.0 * n * 2.0**-53 * size[name]
            tol += float(np.finfo(dtype).tiny)
            assert np.all(np.abs(arr.astype(np.float64) - want) <= tol), name
        else:  # truncated toward zero; the float64 sum may land either side of an integer
            truncated = np.trunc(want)
            near = np.abs(want - np.rint(want)) < 1e-9
            diff = np.abs(arr.astype(np.float64) - truncated)
            assert np.all(np.where(near, diff <= 1, diff == 0)), name


@settings(max_examples=60, deadline=None)
@given(
    layout=layouts(),
    n=st.integers(1, MANY),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_weighted_mean_equals_the_float64_loop(layout, n, seed, data):
    rng = np.random.default_rng(seed)
    updates = [make(rng, layout) for _ in range(n)]
    weights = data.draw(st.lists(st.floats(0.01, 1e4), min_size=n, max_size=n))
    copies = [{k: v.copy() for k, v in u.items()} for u in updates]
    acc = WeightedSum(like=updates[0])
    for u, w in zip(updates, weights, strict=True):
        acc.add(u, w)
    got = acc.mean()
    assert acc.count == n
    assert acc.total_weight == pytest.approx(sum(weights))
    assert {k: v.dtype for k, v in got.items()} == {k: v.dtype for k, v in updates[0].items()}
    assert_mean_close(got, weighted_oracle(updates, weights), scale(updates, weights), n)
    for u, c in zip(updates, copies, strict=True):  # inputs untouched
        for name in u:
            np.testing.assert_array_equal(u[name], c[name])


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, MANY),
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from([np.float32, np.float64]),
    data=st.data(),
)
def test_weighted_mean_barely_depends_on_reply_order(n, seed, dtype, data):
    rng = np.random.default_rng(seed)
    layout = {"W": ((7, 5), dtype), "b": ((5,), dtype)}
    updates = [make(rng, layout) for _ in range(n)]
    weights = [float(w) for w in rng.integers(1, 10_000, n)]
    order = data.draw(st.permutations(range(n)))
    results = []
    for perm in (range(n), order):
        acc = WeightedSum(like=updates[0])
        for i in perm:
            acc.add(updates[i], weights[i])
        results.append(acc.mean())
    size = scale(updates, weights)
    for name in layout:
        a, b = (r[name].astype(np.float64) for r in results)
        if dtype == np.float32:  # at most one unit in the last place apart
            assert np.all(
                np.abs(a - b) <= np.spacing(np.maximum(np.abs(a), np.abs(b)), dtype=np.float32)
            )
        else:
            assert np.all(np.abs(a - b) <= 4 * n * 2.0**-53 * size[name] + 1e-300)


def test_weighted_sum_across_block_boundaries_and_many_tensors():
    """Tensors straddling fold blocks, zero-size ones, and more replies than are held."""
    rng = np.random.default_rng(7)
    sizes = [8191, 1, 0, 8193, 20_000, 3, 0, 16_384]
    layout = {f"t{i}": ((s,), np.float32 if i % 2 else np.float64) for i, s in enumerate(sizes)}
    n = MANY
    updates = [make(rng, layout) for _ in range(n)]
    weights = [float(w) for w in rng.integers(1, 100, n)]
    acc = WeightedSum(like=updates[0])
    for u, w in zip(updates, weights, strict=True):
        acc.add(u, w)
    total = sum(weights)
    exact = {
        k: sum(w * u[k].astype(np.float64) for u, w in zip(updates, weights, strict=True)) / total
        for k in layout
    }
    assert_mean_close(acc.mean(), exact, scale(updates, weights), n)


def test_mean_returns_fresh_arrays_for_zero_d_tensors_and_can_be_called_again():
    like = {"s": np.zeros((), np.float32), "c": np.zeros((), np.int64)}
    acc = WeightedSum(like=like)
    acc.add({"s": np.array(1.0, np.float32), "c": np.array(4)}, 1.0)
    first = acc.mean()
    assert isinstance(first["s"], np.ndarray) and first["s"].shape == ()
    assert isinstance(first["c"], np.ndarray) and first["c"].dtype == np.int64
    first["s"][...] = 99  # the caller owns the result
    acc.add({"s": np.array(2.0, np.float32), "c": np.array(7)}, 1.0)
    second = acc.mean()
    assert float(second["s"]) == 1.5
    assert int(second["c"]) == 5  # 5.5 truncated


def test_integer_tensors_are_truncated_toward_zero():
    acc = WeightedSum(like={"n": np.zeros(3, np.int64)})
    acc.add({"n": np.array([2, 3, -2])}, 1.0)
    acc.add({"n": np.array([3, 4, -3])}, 2.0)
    np.testing.assert_array_equal(acc.mean()["n"], [2, 3, -2])  # 2.67, 3.67, -2.67
    acc.add({"n": np.array([4, 5, -4])}, 3.0)
    np.testing.assert_array_equal(acc.mean()["n"], [3, 4, -3])  # 3.33, 4.33, -3.33


@pytest.mark.parametrize(
    ("update", "weight", "match"),
    [
        ({"a": np.zeros(3, np.float32)}, 1.0, "'b'"),
        ({"a": np.zeros(4, np.float32), "b": np.zeros((), np.float64)}, 1.0, "shape"),
        ({"a": np.zeros(3, np.complex64), "b": np.zeros((), np.float64)}, 1.0, "not real"),
        ({"a": np.zeros(3, np.float32), "b": np.zeros((), np.float64)}, float("nan"), "finite"),
    ],
)
def test_a_bad_update_raises_and_changes_nothing(update, weight, match):
    like = {"a": np.zeros(3, np.float32), "b": np.zeros((), np.float64)}
    acc = WeightedSum(like=like)
    acc.add({"a": np.ones(3, np.float32), "b": np.array(2.0)}, 1.0)
    with pytest.raises((ValueError, KeyError), match=match):
        acc.add(update, weight)
    assert acc.count == 1 and acc.total_weight == 1.0
    np.testing.assert_array_equal(acc.mean()["a"], np.ones(3, np.float32))


def test_no_weight_is_an_error():
    acc = WeightedSum(like={"a": np.zeros(2)})
    with pytest.raises(ValueError, match="no weight"):
        acc.mean()


def test_weighted_sum_peak_memory_is_a_few_models_whatever_the_replies():
    """The accumulator is float64 (2 float32 models), the mean one model, the numpy fold's
    stack 2 MiB; holding references to replies allocates nothing."""
    p = 1_000_000
    rng = np.random.default_rng(0)
    base = rng.standard_normal(p + 64, dtype=np.float32)
    updates = []
    for k in range(50):  # 50 distinct read-only replies sharing one buffer
        u = base[k : k + p]
        u.flags.writeable = False
        updates.append({"w": u})
    model_bytes = 4 * p
    tracemalloc.start()
    try:
        acc = WeightedSum(like={"w": np.zeros(p, np.float32)}, compiled=False)
        for k, u in enumerate(updates):
            acc.add(u, float(k + 1))
        mean = acc.mean()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * model_bytes + (3 << 20)
    weights = np.arange(1, 51, dtype=np.float64)
    exact = sum(w * u["w"].astype(np.float64) for u, w in zip(updates, weights, strict=True))
    np.testing.assert_allclose(mean["w"], exact / weights.sum(), rtol=1e-6, atol=1e-6)


def test_without_numba_a_large_model_folds_with_numpy(monkeypatch):
    """As where the ``fast`` extra is not installed: numba cannot be imported, and
    ``compiled=True`` gives what ``compiled=False`` gives, bit for bit."""
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba raises ImportError
    monkeypatch.delitem(sys.modules, "consortium.horizontal.compiled", raising=False)
    monkeypatch.delattr(consortium.horizontal, "compiled", raising=False)
    rng = np.random.default_rng(4)
    like = {"w": np.zeros(1 << 18, np.float32), "b": np.zeros(3)}
    updates = [make(rng, {k: (v.shape, v.dtype.type) for k, v in like.items()}) for _ in range(5)]
    weights = [float(k + 1) for k in range(5)]
    means = []
    for compiled in (True, False):
        acc = WeightedSum(like=like, compiled=compiled)
        for u, w in zip(updates, weights, strict=True):
            acc.add(u, w)
        means.append(acc.mean())
    assert "consortium.horizontal.compiled" not in sys.modules
    for name in like:
        np.testing.assert_array_equal(means[0][name], means[1][name])
    exact = {
        k: sum(w * u[k].astype(np.float64) for u, w in zip(updates, weights, strict=True))
        / sum(weights)
        for k in like
    }
    assert_mean_close(means[0], exact, scale(updates, weights), len(updates))


# ---------------------------------------------------------------------------- UpdateStack


def column_values(updates: list[Model], name: str, idx: tuple) -> list[float]:
    return sorted(float(u[name][idx]) for u in updates)


def stack_oracle(updates: list[Model], rule) -> dict[str, np.ndarray]:
    """``rule`` applied to each coordinate's sorted values, in float64."""
    out = {}
    for name, like in updates[0].items():
        res = np.zeros(like.shape)
        for idx in np.ndindex(*like.shape):
            res[idx] = rule(column_values(updates, name, idx))
        out[name] = res
    return out


def stored(dtype: np.dtype, stack_dtype: np.dtype, value: np.ndarray) -> np.ndarray:
    """An oracle value as UpdateStack returns it: via the stack's float type, then the
    tensor's own dtype (integers rounded)."""
    v = value.astype(stack_dtype).astype(np.float64)
    if dtype.kind in "iu":
        v = np.rint(v)
    return v.astype(dtype)


def trimmed(values: list[float], trim: int) -> float:
    middle = values[trim : len(values) - trim]
    return sum(middle) / len(middle)


@settings(max_examples=60, deadline=None)
@given(
    layout=layouts(),
    n=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_median_and_trimmed_mean_equal_sorted_lists(layout, n, seed, data):
    rng = np.random.default_rng(seed)
    updates = [make(rng, layout) for _ in range(n)]
    copies = [{k: v.copy() for k, v in u.items()} for u in updates]
    stack = UpdateStack(like=updates[0], capacity=n + data.draw(st.integers(0, 2)))
    for i in data.draw(st.permutations(range(n))):
        stack.add(updates[i], weight=float(i + 1))
    sd = stack.rows.dtype
    # every update is exactly representable in the stack when it only holds its own
    # dtype or wider; then the median is exact (the midpoint of two values in float64)
    exact_values = all(np.can_cast(np.dtype(d), sd) for _, d in layout.values())
    median = stack.median()
    want = stack_oracle(updates, statistics.median)
    for name, (_, dtype) in layout.items():
        got = median[name]
        assert got.dtype == np.dtype(dtype) and got.shape == updates[0][name].shape
        if exact_values:
            np.testing.assert_array_equal(got, stored(np.dtype(dtype), sd, want[name]))
    trim = data.draw(st.integers(0, (n - 1) // 2))
    result = stack.trimmed_mean(trim)
    want = stack_oracle(updates, lambda v: trimmed(v, trim))
    for name, (_, dtype) in layout.items():
        dt = np.dtype(dtype)
        got = result[name].astype(np.float64)
        if dt.kind == "f":
            tol = np.finfo(dt).eps * (np.abs(want[name]) + 1e-30) + np.finfo(sd).eps * np.max(
                np.abs(np.stack([u[name] for u in updates]).astype(np.float64)), initial=0
            )
            # a mean that rounds to a subnormal (float16 below 6e-5) has a coarser spacing
            tol += float(np.finfo(dt).smallest_subnormal)
            assert np.all(np.abs(got - want[name]) <= tol), name
        elif exact_values:
            assert np.all(np.abs(got - want[name]) <= 0.5 + 1e-9), name
    for u, c in zip(updates, copies, strict=True):
        for name in u:
            np.testing.assert_array_equal(u[name], c[name])


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 15), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_median_and_trimmed_mean_do_not_depend_on_the_order(n, seed, data):
    rng = np.random.default_rng(seed)
    layout = {"W": ((40, 3), np.float32), "b": ((3,), np.float32)}
    updates = [make(rng, layout) for _ in range(n)]
    trim = data.draw(st.integers(0, (n - 1) // 2))
    results = []
    for perm in (range(n), data.draw(st.permutations(range(n)))):
        stack = UpdateStack(like=updates[0], capacity=n)
        for i in perm:
            stack.add(updates[i])
        results.append((stack.median(), stack.trimmed_mean(trim)))
    for name in layout:
        for a, b in zip(results[0], results[1], strict=True):
            np.testing.assert_array_equal(a[name], b[name])


def test_median_over_many_columns_matches_numpy():
    """Columns well past one block of the column-wise reduction, odd and even counts."""
    rng = np.random.default_rng(3)
    for n in (7, 8):
        rows = rng.standard_normal((n, 5000), dtype=np.float32)
        stack = UpdateStack(
            like={"a": np.zeros(3000, np.float32), "b": np.zeros(2000, np.float32)}, capacity=n
        )
        for r in rows:
            stack.add({"a": r[:3000], "b": r[3000:]})
        med = stack.median()
        want = np.median(rows.astype(np.float64), axis=0).astype(np.float32)
        np.testing.assert_array_equal(np.concatenate([med["a"], med["b"]]), want)
        tm = stack.trimmed_mean(2)
        srt = np.sort(rows.astype(np.float64), axis=0)
        np.testing.assert_allclose(
            np.concatenate([tm["a"], tm["b"]]), srt[2 : n - 2].mean(axis=0), rtol=1e-6
        )


def test_a_trimmed_mean_that_rounds_to_a_float16_subnormal():
    values = [-0.01, 0.01, 1e-4, -1e-4, 2e-5, -2e-5, 1e-7]
    stack = UpdateStack(like={"a": np.zeros(1, np.float16)}, capacity=len(values))
    for v in values:
        stack.add({"a": np.array([v], np.float16)})
    middle = sorted(float(np.float16(v)) for v in values)[1:-1]
    want = sum(middle) / len(middle)  # 2.4e-8: half the smallest float16 subnormal
    got = float(stack.trimmed_mean(1)["a"][0])
    assert abs(got - want) <= float(np.finfo(np.float16).smallest_subnormal) / 2


def test_stack_dtype_is_the_widest_float():
    f32, f64 = np.zeros(2, np.float32), np.zeros(2, np.float64)
    ints = np.zeros(2, np.int64)
    assert UpdateStack(like={"a": f32}, capacity=1).rows.dtype == np.float32
    assert UpdateStack(like={"a": f32, "n": ints}, capacity=1).rows.dtype == np.float32
    assert UpdateStack(like={"a": f32, "b": f64}, capacity=1).rows.dtype == np.float64
    assert UpdateStack(like={"n": ints}, capacity=1).rows.dtype == np.float64


def test_stack_rows_weights_unflatten_and_limits():
    like = {
        "W": np.zeros((2, 2), np.float32),
        "n": np.zeros((), np.int64),
        "e": np.zeros(0, np.float32),
    }
    stack = UpdateStack(like=like, capacity=2)
    with pytest.raises(ValueError, match="no updates"):
        stack.median()
    a = {
        "W": np.arange(4, dtype=np.float32).reshape(2, 2),
        "n": np.array(3),
        "e": np.zeros(0, np.float32),
    }
    for arr in a.values():
        arr.flags.writeable = False
    stack.add(a, weight=5.0)
    stack.add({"W": np.ones((2, 2), np.float32), "n": np.array(4), "e": np.zeros(0, np.float32)})
    with pytest.raises(ValueError, match="full"):
        stack.add(a)
    with pytest.raises(ValueError, match="shape"):
        UpdateStack(like=like, capacity=1).add({**a, "W": np.zeros(4, np.float32)})
    assert stack.count == 2
    rows = stack.rows
    assert rows.shape == (2, 5) and not rows.flags.writeable
    np.testing.assert_array_equal(rows[0], [0, 1, 2, 3, 3])
    np.testing.assert_array_equal(stack.weights, [5.0, 1.0])
    assert stack.weights.dtype == np.float64 and not stack.weights.flags.writeable
    back = stack.unflatten(np.array([0.5, 1, 2, 3, 2.6], np.float32))
    assert back["W"].dtype == np.float32 and back["W"].shape == (2, 2)
    assert back["n"].shape == () and back["n"].dtype == np.int64 and int(back["n"]) == 3
    assert back["e"].shape == (0,)
    back["W"][0, 0] = 42  # fresh arrays, not views of the caller's vector or the stack
    np.testing.assert_array_equal(stack.rows[0], [0, 1, 2, 3, 3])
    with pytest.raises(ValueError, match="flat vector"):
        stack.unflatten(np.zeros(4))
    np.testing.assert_array_equal(stack.median()["W"], [[0.5, 1], [1.5, 2]])
    assert int(stack.median()["n"]) == 4  # 3.5 rounds to even
    for bad in (-1, 1, 2):
        with pytest.raises(ValueError, match="trim"):
            stack.trimmed_mean(bad)
