"""Multi-exponentiation: ``prod_j b_j^(e_j) mod m`` in far fewer multiplications than
one modular power per term.

This is the ``X^T [[d]]`` step of the vertical protocols: every output is a product of
ciphertexts raised to plaintext features, and packing cannot help there. Two methods:

- **buckets**, for one product at a time: Pippenger's method ("On the evaluation of powers
  and monomials", SIAM J. Comput. 9(2), 1980) in the form used for elliptic-curve
  multi-scalar multiplication (Bernstein et al., "Faster batch forgery identification",
  INDOCRYPT 2012, section 4). Exponents are cut into windows of ``w`` bits; for each
  window, from the top, the running result is raised to ``2^w``, every base goes into the
  bucket of its digit with one multiplication, and the buckets are folded with
  ``2^(w+1)`` multiplications (running products). For ``k`` terms of ``b`` bits this
  costs about ``ceil(b/w) * (k + 2^(w+1)) + b`` modular multiplications, against about
  ``1.2 * b`` per term for separate powers: some 5x fewer for a thousand 40-bit exponents.
  Negative exponents are split off: ``P * N^-1`` with one inversion per output, where
  ``N`` collects the terms with negative exponents.
- **subsets**, for many products over the same bases (the rows of ``X^T``): the bases are
  cut into groups of ``g`` and the products of every subset of each group are tabulated
  once (``2^g`` multiplications per group, shared by all rows). A row is then evaluated
  bit by bit from the top, Straus's interleaving ("Addition chains of vectors", Amer.
  Math. Monthly 71, 1964) over the groups: one squaring per bit, one table look-up and
  multiplication per group. For ``r`` rows of ``k`` terms of ``b`` bits this costs about
  ``(k / g) * 2^g + r * b * (k / g + 1)``: with 250 bases, 35-bit exponents and a hundred
  rows (``g = 9``) some 1,150 multiplications a row, against 2,200 by buckets. Signed
  exponents are shifted by ``2^B`` (above every magnitude) to be non-negative, and every
  row divided by the shared ``(prod_j b_j)^(2^B)`` (one inversion for all rows).

``method="auto"`` (the default of :func:`multiexp_rows`) picks the cheaper of the two by
their cost models, weighed by measured costs per multiplication. :func:`naive_multiexp` is
the plain oracle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from consortium.privacy.paillier._gmp import gmpy2

__all__ = [
    "MULTIEXP_METHODS",
    "best_group",
    "best_window",
    "cheaper_method",
    "exponent_bits",
    "multiexp",
    "multiexp_rows",
    "naive_multiexp",
    "split_across",
    "subset_multiexp_rows",
]

MULTIEXP_METHODS = ("auto", "subsets", "buckets", "naive")

# Subset tables held at once, in entries: 2^15 ciphertexts of 4096 bits are 16 MiB. More
# bases than fit are done in blocks, each with its own squarings (counted by the model).
_TABLE_ENTRIES = 1 << 15
# Exponent bits unpacked at once (bytes of numpy memory) when reading the rows' digits.
_DIGIT_BYTES = 1 << 24


def naive_multiexp(bases: Sequence[Any], exponents: Sequence[int], modulus: Any) -> Any:
    """``prod b^e mod modulus`` with one ``powmod`` per term (negative ``e`` invert ``b``)."""
    powmod = gmpy2().powmod
    acc = gmpy2().mpz(1)
    for b, e in zip(bases, exponents, strict=True):
        if e:
            acc = acc * powmod(b, e, modulus) % modulus
    return acc


def _bucket_cost(terms: int, bits: int, w: int) -> int:
    return -(-bits // w) * (terms + (2 << w)) + bits


def best_window(terms: int, bits: int) -> int:
    """The window width minimising the bucket method's cost model for ``terms`` exponents
    of at most ``bits`` bits."""
    if terms <= 0 or bits <= 0:
        return 1
    return min(range(1, 21), key=lambda w: _bucket_cost(terms, bits, w))


def _subset_cost(rows: int, terms: int, bits: int, g: int) -> int:
    groups = -(-terms // g)
    blocks = -(-groups // max(1, _TABLE_ENTRIES >> g))
    return groups * ((1 << g) - g - 1) + rows * bits * (groups + blocks)


def best_group(rows: int, terms: int, bits: int) -> int:
    """The group size minimising the subset method's cost model for ``rows`` rows of
    ``terms`` exponents of at most ``bits`` bits."""
    if rows <= 0 or terms <= 0 or bits <= 0:
        return 1
    return min(range(1, 16), key=lambda g: _subset_cost(rows, terms, bits, g))


def _extent(rows: Sequence[Sequence[int]]) -> tuple[int, bool]:
    """The largest magnitude among the exponents of ``rows``, and whether any is negative."""
    filled = [row for row in rows if len(row)]
    if not filled:
        return 0, False
    high = max(int(max(row)) for row in filled)
    low = min(int(min(row)) for row in filled)
    return max(high, -low, 0), low < 0


def exponent_bits(rows: Sequence[Sequence[int]]) -> int:
    """Bits the subset method reads per exponent of ``rows``: the largest magnitude's, plus
    one when any exponent is negative (the offset that makes them all positive)."""
    top, signed = _extent(rows)
    return top.bit_length() + signed


def split_across(rows: int, terms: int, bits: int, parts: int) -> str:
    """How to cut ``multiexp_rows`` over ``terms`` bases and ``rows`` rows into ``parts``
    jobs run at once: ``"rows"`` (each job all bases, some rows: every job tabulates every
    base) or ``"terms"`` (each job some bases, all rows: every job squares for every row,
    and the partial products are multiplied together after). The one whose longest job
    is cheaper by the subset method's cost model, counting the final multiplications."""
    if rows <= 0 or terms <= 0 or bits <= 0 or parts <= 1:
        return "rows"

    def cost(r: int, k: int) -> int:
        return _subset_cost(r, k, bits, best_group(r, k, bits))

    by_rows = cost(-(-rows // parts), terms)
    by_terms = cost(rows, -(-terms // parts)) + rows * (min(parts, terms) - 1)
    return "terms" if by_terms < by_rows else "rows"


def multiexp(
    bases: Sequence[Any], exponents: Sequence[int], modulus: Any, *, window: int | None = None
) -> Any:
    """``prod_j bases[j]^exponents[j] mod modulus`` by the bucket method, ``window`` bits a
    digit (:func:`best_window` by default). Bases must be units mod ``modulus`` when any
    exponent is negative (ciphertexts are)."""
    terms = [(b, int(e)) for b, e in zip(bases, exponents, strict=True)]
    result = _buckets([(b, e) for b, e in terms if e > 0], modulus, window)
    negative = [(b, -e) for b, e in terms if e < 0]
    if negative:
        inverse = gmpy2().invert(_buckets(negative, modulus, window), modulus)
        result = result * inverse % modulus
    return result


def multiexp_rows(
    bases: Sequence[Any], rows: Sequence[Sequence[int]], modulus: Any, *, method: str = "auto"
) -> list[Any]:
    """One multi-exponentiation per row of exponents, all over the same ``bases``:
    ``[prod_j bases[j]^row[j] for row in rows]``. ``method`` is ``"auto"`` (the cheaper
    of the next two for this shape), ``"subsets"``, ``"buckets"`` or ``"naive"``; all give
    the same residues."""
    if method not in MULTIEXP_METHODS:
        raise ValueError(
            f"unknown multi-exponentiation method {method!r}: one of {MULTIEXP_METHODS}"
        )
    for row in rows:
        if len(row) != len(bases):
            raise ValueError(f"a row has {len(row)} exponents for {len(bases)} bases")
    if method == "auto":
        method = cheaper_method(len(bases), rows)
    if method == "subsets":
        return subset_multiexp_rows(bases, rows, modulus)
    if method == "buckets":
        return [multiexp(bases, row, modulus) for row in rows]
    return [naive_multiexp(bases, row, modulus) for row in rows]


def cheaper_method(terms: int, rows: Sequence[Sequence[int]]) -> str:
    """The method ``"auto"`` picks for ``rows`` over ``terms`` bases: ``"subsets"`` or
    ``"buckets"``, whichever the cost models (weighed by measured costs) find cheaper."""
    top, signed = _extent(rows)
    bits = top.bit_length()
    if not terms or not bits:
        return "buckets"
    # buckets split each row into its positive and negative terms: two halves, two folds
    halves = 2 if signed else 1
    buckets = len(rows) * halves * _bucket_cost(-(-terms // halves), bits, best_window(terms, bits))
    width = bits + signed
    subsets = _subset_cost(len(rows), terms, width, best_group(len(rows), terms, width))
    # A subset-method multiplication costs about 4/3 of a bucket one, measured at 2048-bit
    # keys (its tables outgrow the caches, and it squares more): weigh the models by that.
    return "subsets" if 4 * subsets < 3 * buckets else "buckets"


def subset_multiexp_rows(
    bases: Sequence[Any],
    rows: Sequence[Sequence[int]],
    modulus: Any,
    *,
    group: int | None = None,
    table_entries: int = _TABLE_ENTRIES,
    digit_bytes: int = _DIGIT_BYTES,
) -> list[Any]:
    """``[prod_j bases[j]^row[j] mod modulus for row in rows]`` by the subset method (see
    the module's docstring); ``group`` (bases per table) defaults to :func:`best_group`.
    Bases must be units when any exponent is negative. ``table_entries`` bounds the subset
    tables held at once (more bases are done in blocks) and ``digit_bytes`` the memory for
    unpacking the rows' digits (more rows are unpacked a chunk at a time)."""
    g = gmpy2()
    m = g.mpz(modulus)
    exps = [[int(e) for e in row] for row in rows]
    k = len(bases)
    top, signed = _extent(exps)
    if not k or not top:
        return [g.mpz(1) % m for _ in exps]
    offset = 1 << top.bit_length() if signed else 0  # every e + offset is positive
    bits = top.bit_length() + signed
    width = best_group(len(exps), k, bits) if group is None else group
    if width < 1:
        raise ValueError(f"group must be at least 1 base, got {width}")
    units = [g.mpz(b) % m for b in bases]
    out: list[Any] = [None] * len(exps)
    step = width * max(1, table_entries >> width)  # bases per block of tables
    chunk = max(1, digit_bytes // (min(step, k) * bits))  # rows per unpacking of digits
    for start in range(0, k, step):
        stop = min(k, start + step)
        tables = [
            _subset_table(units[a : min(a + width, stop)], m) for a in range(start, stop, width)
        ]
        for r0 in range(0, len(exps), chunk):
            part = [row[start:stop] for row in exps[r0 : r0 + chunk]]
            for r, levels in enumerate(_digits(part, offset, bits, width), r0):
                value = _interleave(tables, levels, m)
                if value is not None:
                    out[r] = value if out[r] is None else out[r] * value % m
    if signed:  # divide every row by (prod_j b_j)^offset
        total = g.mpz(1)
        for b in units:
            total = total * b % m
        correction = g.powmod(g.invert(total, m), offset, m)
        out = [v * correction % m for v in out]
    one = g.mpz(1) % m
    return [one if v is None else v for v in out]


def _subset_table(bases: list[Any], m: Any) -> list[Any]:
    """``table[s] = prod_{i in s} bases[i]`` for every non-empty subset ``s`` (a bit mask)."""
    table: list[Any] = [None] * (1 << len(bases))
    for i, b in enumerate(bases):
        high = 1 << i
        table[high] = b
        for low in range(1, high):
            table[high | low] = table[low] * b % m
    return table


def _digits(rows: list[list[int]], offset: int, bits: int, width: int) -> list[list[list[int]]]:
    """For each row, from the top bit down, the subset index of every group of ``width``
    exponents (``e + offset``) at that bit."""
    count, terms = len(rows), len(rows[0])
    nbytes = (bits + 7) // 8
    raw = b"".join((e + offset).to_bytes(nbytes, "little") for row in rows for e in row)
    packed = np.frombuffer(raw, dtype=np.uint8).reshape(count, terms, nbytes)
    bitmap = np.unpackbits(packed, axis=2, count=bits, bitorder="little")
    groups = -(-terms // width)
    if groups * width > terms:
        bitmap = np.pad(bitmap, ((0, 0), (0, groups * width - terms), (0, 0)))
    weights = np.left_shift(1, np.arange(width, dtype=np.int64))
    index = np.tensordot(bitmap.reshape(count, groups, width, bits), weights, axes=([2], [0]))
    levels: list[list[list[int]]] = index[:, :, ::-1].transpose(0, 2, 1).tolist()
    return levels


def _interleave(tables: list[list[Any]], levels: list[list[int]], m: Any) -> Any:
    """``prod_groups table[index]`` over the bits, squaring between them (None for 1)."""
    acc: Any = None
    for level in levels:
        if acc is not None:
            acc = acc * acc % m
        for table, i in zip(tables, level, strict=True):
            if i:
                acc = table[i] if acc is None else acc * table[i] % m
    return acc


def _buckets(terms: list[tuple[Any, int]], m: Any, window: int | None) -> Any:
    """``prod b^e mod m`` over ``(base, positive exponent)`` terms."""
    g = gmpy2()
    one = g.mpz(1)
    if not terms:
        return one
    bits = max(e for _, e in terms).bit_length()
    w = best_window(len(terms), bits) if window is None else window
    if w < 1:
        raise ValueError(f"window must be at least 1 bit, got {w}")
    mask = (1 << w) - 1
    acc: Any = None
    for shift in range(((bits - 1) // w) * w, -1, -w):
        buckets: list[Any] = [None] * (mask + 1)
        for b, e in terms:
            d = (e >> shift) & mask
            if d:
                x = buckets[d]
                buckets[d] = b if x is None else x * b % m
        # Fold: total = prod_d buckets[d]^d, as a product of running products.
        running: Any = None
        total: Any = None
        for d in range(mask, 0, -1):
            x = buckets[d]
            if x is not None:
                running = x if running is None else running * x % m
            if running is not None:
                total = running if total is None else total * running % m
        if acc is not None:
            acc = g.powmod(acc, 1 << w, m)
            if total is not None:
                acc = acc * total % m
        else:
            acc = total
    return one if acc is None else acc % m
