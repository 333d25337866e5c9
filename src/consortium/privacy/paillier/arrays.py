"""Arrays of Paillier ciphertexts with numpy-like arithmetic.

:class:`EncryptedArray` holds ciphertexts (gmpy2 integers in a numpy object array), their
shape, their fixed-point exponent and a proven bound on the magnitude of their encoded
values. It supports what Paillier allows (Paillier, EUROCRYPT 1999, section 8):
ciphertext + ciphertext, ciphertext + plaintext, ciphertext * plaintext, sums, and
plaintext-matrix times encrypted-vector products (``X @ enc`` and ``enc @ X``, the latter
being ``X^T [[d]]``) by multi-exponentiation (see :mod:`.multiexp`).

Overflow: every operation updates ``bound`` (a triangle-inequality upper bound on
``|round(value * 2^exponent)|``) and raises
:class:`~consortium.privacy.paillier.EncodingOverflow` as soon as it could exceed the
key's ``max_int``; arrays loaded from the wire may have an unknown bound (``None``), and
then the band check at decryption catches overflows instead.

Re-randomisation: a result computed from ciphertexts another party has seen, with our
plaintexts, is a public function of both (that party could test guesses of our
plaintexts). Such results are marked ``derived``; serialisation re-randomises them by
default (multiplying by a fresh ``r^n``), and :meth:`EncryptedArray.rerandomize` does it
by hand.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from consortium.privacy.paillier import primitives
from consortium.privacy.paillier._gmp import gmpy2
from consortium.privacy.paillier.encoding import (
    Encoding,
    from_residues,
    max_abs,
    object_array,
    to_residues,
)
from consortium.privacy.paillier.errors import EncodingOverflow, InvalidCiphertext
from consortium.privacy.paillier.multiexp import multiexp_rows
from consortium.privacy.paillier.obfuscators import ObfuscatorPool, fresh_obfuscators

if TYPE_CHECKING:
    from consortium.privacy.paillier.keys import PrivateKey, PublicKey

__all__ = [
    "EncryptedArray",
    "decrypt",
    "decrypt_encoded",
    "decrypt_residues",
    "encrypt",
    "matvec",
    "matvec_with",
    "rmatvec",
]


def encrypt(
    public_key: PublicKey,
    values: Any,
    *,
    encoding: Encoding | None = None,
    obfuscators: ObfuscatorPool | None = None,
) -> EncryptedArray:
    """Encrypt numbers (a scalar or any array) at ``encoding.precision`` fractional bits (32
    by default). With ``obfuscators`` (a pool for this key) each encryption takes a
    precomputed ``r^n`` and costs one multiplication; without, it computes a fresh one."""
    enc = Encoding() if encoding is None else encoding
    ints = enc.encode(values)
    flat = ints.ravel().tolist()
    n, nsq = public_key.n, public_key.nsq
    residues = to_residues(flat, n)
    obfs = fresh_obfuscators(public_key, len(residues), obfuscators)
    cts = [primitives.raw_encrypt(m, n, nsq, r) for m, r in zip(residues, obfs, strict=True)]
    c = object_array(cts, ints.shape)
    return EncryptedArray(public_key, c, exponent=enc.precision, encoding=enc, bound=max_abs(flat))


def decrypt(private_key: PrivateKey, encrypted: EncryptedArray) -> np.ndarray:
    """The float64 values of ``encrypted``: :class:`InvalidCiphertext` for anything not
    under this key, :class:`EncodingOverflow` for a result outside the representable range."""
    return Encoding.decode(decrypt_encoded(private_key, encrypted), encrypted.exponent)


def decrypt_encoded(private_key: PrivateKey, encrypted: EncryptedArray) -> np.ndarray:
    """The signed integers ``round(value * 2^exponent)`` of ``encrypted``, exactly, as an
    object array."""
    ints = from_residues(_residues(private_key, encrypted), private_key.public_key.n)
    return object_array(ints, encrypted.shape)


def decrypt_residues(private_key: PrivateKey, encrypted: EncryptedArray) -> np.ndarray:
    """The plaintext residues in ``[0, n)`` of ``encrypted``, signs and overflow unread:
    what the arbiter returns for masked values (a residue of ``value + mask`` is uniform in
    ``[0, n)`` and only the masking party can unmask it)."""
    return object_array(_residues(private_key, encrypted), encrypted.shape)


def _residues(private_key: PrivateKey, encrypted: EncryptedArray) -> list[Any]:
    if encrypted.public_key != private_key.public_key:
        raise InvalidCiphertext()
    return private_key.raw_decrypt(encrypted.ciphertext_list())


def _is_integral(arr: np.ndarray) -> bool:
    if arr.dtype.kind in "iub":
        return True
    return arr.dtype.kind == "O" and all(isinstance(v, numbers.Integral) for v in arr.flat)


class EncryptedArray:
    """Ciphertexts of fixed-point values at ``exponent`` fractional bits, in a given shape.
    Made by :func:`encrypt` or ``ciphertexts_from_array``: the constructor trusts its input."""

    __slots__ = ("_c", "bound", "derived", "encoding", "exponent", "public_key")
    __array_ufunc__ = None  # numpy hands binary operators (ndarray @ self) over to us

    def __init__(
        self,
        public_key: PublicKey,
        ciphertexts: np.ndarray,
        *,
        exponent: int,
        encoding: Encoding | None = None,
        bound: int | None = None,
        derived: bool = False,
    ) -> None:
        if bound is not None and bound > public_key.max_int:
            raise EncodingOverflow(
                f"the result may need {bound.bit_length()} bits but this key holds "
                f"{public_key.max_int.bit_length() - 1}: lower the precision, scale the data "
                "down, or use a larger key"
            )
        c = np.asarray(ciphertexts, dtype=object)
        c.flags.writeable = False
        self._c = c
        self.public_key = public_key
        self.exponent = int(exponent)
        self.encoding = Encoding() if encoding is None else encoding
        self.bound = bound
        self.derived = derived

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._c.shape)

    @property
    def ndim(self) -> int:
        return int(self._c.ndim)

    @property
    def size(self) -> int:
        return int(self._c.size)

    def __len__(self) -> int:
        return len(self._c)

    def __repr__(self) -> str:
        return (
            f"EncryptedArray(shape={self.shape}, exponent={self.exponent}, "
            f"key={self.public_key.fingerprint})"
        )

    @property
    def ciphertexts(self) -> np.ndarray:
        """The ciphertexts, a read-only object array of gmpy2 integers."""
        return self._c

    def ciphertext_list(self) -> list[Any]:
        """The ciphertexts as a flat list in C order."""
        return list(self._c.ravel().tolist())

    def _like(
        self, c: Any, *, exponent: int | None = None, bound: int | None, derived: bool = True
    ) -> EncryptedArray:
        return EncryptedArray(
            self.public_key,
            np.asarray(c, dtype=object),
            exponent=self.exponent if exponent is None else exponent,
            encoding=self.encoding,
            bound=bound,
            derived=derived,
        )

    def __getitem__(self, index: Any) -> EncryptedArray:
        return self._like(self._c[index], bound=self.bound, derived=self.derived)

    def reshape(self, *shape: Any) -> EncryptedArray:
        return self._like(self._c.reshape(*shape), bound=self.bound, derived=self.derived)

    def aligned(self, exponent: int) -> EncryptedArray:
        """The same values at a larger ``exponent`` (each ciphertext raised to 2^shift)."""
        shift = exponent - self.exponent
        if shift < 0:
            raise ValueError("an exponent can only be raised, not lowered, under encryption")
        if shift == 0:
            return self
        powmod, nsq, k = gmpy2().powmod, self.public_key.nsq, 1 << shift
        c = np.frompyfunc(lambda x: powmod(x, k, nsq), 1, 1)(self._c)
        bound = None if self.bound is None else self.bound << shift
        return self._like(c, exponent=exponent, bound=bound)

    def __add__(self, other: Any) -> EncryptedArray:
        nsq = self.public_key.nsq
        if isinstance(other, EncryptedArray):
            if other.public_key != self.public_key:
                raise ValueError("cannot combine ciphertexts under different public keys")
            e = max(self.exponent, other.exponent)
            a, b = self.aligned(e), other.aligned(e)
            c = np.frompyfunc(lambda x, y: x * y % nsq, 2, 1)(a._c, b._c)
            bound = None if a.bound is None or b.bound is None else a.bound + b.bound
            return self._like(c, exponent=e, bound=bound)
        ints = self.encoding.encode(other, exponent=self.exponent)
        top = max_abs(ints.ravel().tolist())
        n = self.public_key.n
        to_residues([top], n)  # the plaintext itself must be representable
        c = np.frompyfunc(lambda x, m: x * (1 + m % n * n) % nsq, 2, 1)(self._c, ints)
        return self._like(c, bound=None if self.bound is None else self.bound + top)

    __radd__ = __add__

    def __neg__(self) -> EncryptedArray:
        nsq, invert = self.public_key.nsq, gmpy2().invert
        c = np.frompyfunc(lambda x: invert(x, nsq), 1, 1)(self._c)
        return self._like(c, bound=self.bound)

    def __sub__(self, other: Any) -> EncryptedArray:
        if isinstance(other, EncryptedArray):
            return self + (-other)
        arr = np.asarray(other)
        if arr.dtype.kind in "ub":  # unsigned and boolean negation would wrap around
            arr = arr.astype(object)
        return self + np.negative(arr)

    def __rsub__(self, other: Any) -> EncryptedArray:
        return (-self) + other

    def _plain_exponents(self, other: Any) -> tuple[np.ndarray, int]:
        arr = np.asarray(other)
        pe = 0 if _is_integral(arr) else self.encoding.precision
        return self.encoding.encode(arr, exponent=pe), pe

    def __mul__(self, other: Any) -> EncryptedArray:
        if isinstance(other, EncryptedArray):
            raise TypeError("Paillier cannot multiply two ciphertexts: multiply by plaintexts")
        ks, pe = self._plain_exponents(other)
        powmod, nsq = gmpy2().powmod, self.public_key.nsq
        c = np.frompyfunc(lambda x, k: powmod(x, k, nsq), 2, 1)(self._c, ks)
        bound = None if self.bound is None else self.bound * max_abs(ks.ravel().tolist())
        return self._like(c, exponent=self.exponent + pe, bound=bound)

    __rmul__ = __mul__

    def __matmul__(self, other: Any) -> EncryptedArray:
        return rmatvec(np.asarray(other), self)

    def __rmatmul__(self, other: Any) -> EncryptedArray:
        return matvec(np.asarray(other), self)

    def sum(self, axis: int | None = None) -> EncryptedArray:
        """The encrypted sum over ``axis`` (all elements when ``None``)."""
        nsq = self.public_key.nsq
        c, ax = (self._c.ravel(), 0) if axis is None else (self._c, axis)
        if c.shape[ax] == 0:
            raise ValueError("cannot sum an empty encrypted array")
        out = np.frompyfunc(lambda x, y: x * y % nsq, 2, 1).reduce(c, axis=ax)
        return self._like(out, bound=None if self.bound is None else self.bound * c.shape[ax])

    def rerandomize(self, obfuscators: ObfuscatorPool | None = None) -> EncryptedArray:
        """The same plaintexts under fresh randomness (one new ``r^n`` per ciphertext)."""
        nsq = self.public_key.nsq
        obfs = fresh_obfuscators(self.public_key, self.size, obfuscators)
        cts = [c * r % nsq for c, r in zip(self.ciphertext_list(), obfs, strict=True)]
        return self._like(object_array(cts, self.shape), bound=self.bound, derived=False)


def matvec_with(
    matrix: Any, vector: EncryptedArray, products: Callable[[list[list[int]]], list[Any]]
) -> EncryptedArray:
    """``matrix @ vector`` for a plaintext matrix (m, k) or vector (k,) and an encrypted
    vector (k,), where ``products(rows)`` gives ``prod_j c_j^(row_j) mod n^2`` over the
    ciphertexts for each row of the matrix's encoded integers."""
    x = np.asarray(matrix)
    if vector.ndim != 1:
        raise ValueError(f"the encrypted operand must be a vector, got shape {vector.shape}")
    if x.ndim not in (1, 2) or x.shape[-1] != vector.shape[0]:
        raise ValueError(f"shapes {x.shape} and {vector.shape} do not align for a product")
    ks, pe = vector._plain_exponents(x.reshape(-1, x.shape[-1]))
    rows = [list(r) for r in ks.tolist()]
    bound = None
    if vector.bound is not None:
        bound = vector.bound * max((sum(abs(k) for k in r) for r in rows), default=0)
    shape = () if x.ndim == 1 else (x.shape[0],)
    out = object_array(products(rows), shape)
    return vector._like(out, exponent=vector.exponent + pe, bound=bound)


def matvec(matrix: Any, vector: EncryptedArray, *, method: str = "auto") -> EncryptedArray:
    """``matrix @ vector``: each output ``prod_j c_j^(x_ij)`` by multi-exponentiation
    (``method``: ``"auto"``, ``"subsets"``, ``"buckets"``, see ``multiexp.multiexp_rows``)
    or one power per term (``"naive"``)."""
    cts, nsq = vector.ciphertext_list(), vector.public_key.nsq
    return matvec_with(matrix, vector, lambda rows: multiexp_rows(cts, rows, nsq, method=method))


def rmatvec(matrix: Any, vector: EncryptedArray, *, method: str = "auto") -> EncryptedArray:
    """``matrix.T @ vector``: for features X (samples, features) and encrypted residuals
    ``[[d]]`` (samples,), the encrypted gradient ``X^T [[d]]`` (features,)."""
    x = np.asarray(matrix)
    return matvec(x.T if x.ndim == 2 else x, vector, method=method)
