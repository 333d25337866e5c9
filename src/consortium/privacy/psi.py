"""Private set intersection (PSI) by commutative blinding of hashed ids (ECDH-PSI).

Each id ``x`` is hashed to a point ``H(x)`` of the prime-order subgroup of Curve25519
(order ``l = 2^252 + ...``), written as its Montgomery u-coordinate. A party with a secret
scalar ``a`` *blinds* a point as ``a·P`` with X25519 (RFC 7748, through libsodium); blinding
commutes, so ``a·(b·H(x)) = b·(a·H(x))`` and two parties can compare ids blinded by both
keys without either seeing the other's ids. Recovering ``x`` from ``a·H(x)`` is a discrete
logarithm, and telling whether two differently blinded points hide the same id is the
decisional Diffie-Hellman problem.

The idea is Meadows (1986), "A More Efficient Cryptographic Matchmaking Protocol for Use in
the Absence of a Continuously Available Third Party", IEEE S&P, and Huberman, Franklin and
Hogg (1999), "Enhancing Privacy and Trust in Electronic Communities", ACM EC. The version
here is one-sided: the *receiver* (the VFL master) learns which of its ids each *sender* (a
member) holds; the sender learns only the final intersection, which the receiver sends back
as positions in the sender's own (secretly shuffled) list::

    sender                          receiver
                           <------  T = shuffle(k_r·H(a))
    S = shuffle(k_s·H(b)),
    k_s·T                  ------>  F_b = k_r·S, and k_s·T = k_r·k_s·H(a): match them
    rows of the intersection <----  positions into S, in the receiver's order

What each side learns (semi-honest parties, who follow the protocol): the sender sees only
the receiver's ids under a key it does not know (so the receiver's set *size*) and, at the
end, the positions of the intersection; it never gets its own ids under the receiver's key,
so it can match nothing. The receiver learns which of its ids the sender holds (with one
sender, exactly the intersection) and the sender's set size. A party that lies about its
set (adds ids it does not hold, to probe for them) learns whether the other holds them:
inherent to any PSI, and outside the semi-honest model.

A party cannot learn bits of another's key from the points it sends (the small-subgroup
attack): every canonical u-coordinate (below ``2^255 - 19``) is that of a point either on
Curve25519 (order ``8·l``) or on its quadratic twist (order ``4·l'``, ``l'`` a 253-bit
prime), and every secret scalar is *clamped* (RFC 7748: a multiple of 8 in ``[2^254,
2^255)``), so a small-order component of either group is multiplied away and what is left
lies in the subgroup of prime order ``l`` or ``l'`` (Bernstein, "Curve25519: new
Diffie-Hellman speed records", PKC 2006, on twist security). A point of small order gives
the all-zero result, which libsodium refuses; a u-coordinate that is not canonical (the top
bit set, or at least ``2^255 - 19``) is refused before a key touches it. Blinding by X25519
costs about a third of a scalar multiplication in Edwards form with its subgroup check,
the reason for the choice.

Two tiers: :class:`PsiSender` and :class:`PsiReceiver`, the protocol's two roles, pure and
without I/O (callers move the ``uint8 (n, 32)`` arrays), over the raw primitives
:func:`hash_ids`, :func:`blind` and :func:`random_scalar`. Every failure on data from
another party raises one opaque :class:`PsiError`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "POINT_BYTES",
    "Match",
    "PsiError",
    "PsiReceiver",
    "PsiSender",
    "blind",
    "edwards_to_montgomery",
    "hash_ids",
    "intersect",
    "random_scalar",
]

POINT_BYTES = 32  # a Montgomery u-coordinate, little-endian; scalars are 32 bytes too
_HASH_TAG = b"consortium/psi/v2/x25519-two-maps"  # domain separation of the id hash
_FIELD = 2**255 - 19  # the prime of Curve25519's field
_Y_MASK = (1 << 255) - 1  # an Edwards encoding without its sign bit: the y-coordinate


class PsiError(Exception):
    """A point from another party is not a canonical u-coordinate or blinds to the identity
    (a point of small order), or a reply does not fit the request. One error for every
    failure, saying nothing about which check failed."""

    def __init__(self) -> None:
        super().__init__("invalid private-set-intersection data from the other party")


def _nacl() -> Any:
    import nacl.bindings  # PyNaCl (libsodium), a dependency: ~60 ms to load, so on first use

    return nacl.bindings


def random_scalar() -> int:
    """A secret scalar from the OS's CSPRNG, clamped as X25519 uses it: a multiple of 8 in
    ``[2^254, 2^255)``, with 251 random bits. Never derive it from the job's seed: every
    party knows that seed."""
    return (1 << 254) | (secrets.randbits(251) << 3)


def _clamped(scalar: int) -> bool:
    return scalar % 8 == 0 and 1 << 254 <= scalar < 1 << 255


_T = TypeVar("_T")
_CHUNK = 256  # points per task when a large set is spread over threads


@functools.cache
def _threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="psi")


def _chunked(work: Callable[[Sequence[_T]], bytes], items: Sequence[_T]) -> bytes:
    """``work`` over chunks of ``items``, concatenated in order. libsodium releases the
    interpreter lock, so the chunks of a large set run on every core at once."""
    if len(items) <= _CHUNK:
        return work(items)
    chunks = [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]
    return b"".join(_threads().map(work, chunks))


def hash_ids(ids: Sequence[str | bytes], *, domain: str) -> np.ndarray:
    """Hash each id to a point of the prime-order group, as its u-coordinate ``uint8 (n, 32)``.

    SHA-512 of the tag, the domain and the id gives two 32-byte strings; each is mapped to the
    group with Elligator 2 (libsodium, in Edwards form, clears the cofactor) and the two points
    are added, so the hash behaves as a random oracle into the group (the "two maps"
    construction of RFC 9380); the sum goes to Montgomery form, ``u = (1 + y) / (1 - y)``.
    ``domain`` separates runs (pass the job id), so points of one run are useless in another.
    """
    nacl = _nacl()
    from_uniform = nacl.crypto_core_ed25519_from_uniform
    add = nacl.crypto_core_ed25519_add
    prefix = hashlib.sha512()
    dom = domain.encode()
    prefix.update(_HASH_TAG + len(dom).to_bytes(4, "little") + dom)

    def work(chunk: Sequence[str | bytes]) -> bytes:
        out = bytearray()
        for item in chunk:
            raw = item.encode() if isinstance(item, str) else bytes(item)
            h = prefix.copy()
            h.update(len(raw).to_bytes(4, "little") + raw)
            digest = h.digest()
            out += add(from_uniform(digest[:32]), from_uniform(digest[32:]))
        return bytes(out)

    out = edwards_to_montgomery(_chunked(work, ids))
    return np.frombuffer(out, dtype=np.uint8).reshape(len(ids), POINT_BYTES).copy()


def edwards_to_montgomery(edwards: bytes) -> bytes:
    """The u-coordinates of Edwards points of the prime-order group (concatenated 32-byte
    encodings), with one field inversion for all of them (Montgomery's trick)."""
    ys = [
        int.from_bytes(edwards[i : i + POINT_BYTES], "little") & _Y_MASK
        for i in range(0, len(edwards), POINT_BYTES)
    ]
    prefix, acc = [], 1
    for y in ys:
        acc = acc * (1 - y) % _FIELD
        prefix.append(acc)
    if not acc:  # y = 1 is the identity: the hash of an id never lands there in practice
        raise ValueError("an id hashed to the identity point")
    inv = pow(acc, -1, _FIELD)  # 1 / prod(1 - y)
    out = bytearray(len(edwards))
    for i in range(len(ys) - 1, -1, -1):
        y = ys[i]
        den_inv = inv * (prefix[i - 1] if i else 1) % _FIELD  # 1 / (1 - y_i)
        inv = inv * (1 - y) % _FIELD
        u = (1 + y) * den_inv % _FIELD
        out[i * POINT_BYTES : (i + 1) * POINT_BYTES] = u.to_bytes(POINT_BYTES, "little")
    return bytes(out)


def _points(arr: np.ndarray) -> np.ndarray:
    points = np.asarray(arr)
    if points.dtype != np.uint8 or points.ndim != 2 or points.shape[1] != POINT_BYTES:
        raise PsiError()
    return np.ascontiguousarray(points)


def _canonical(points: np.ndarray) -> bool:
    """Every row is a u-coordinate below ``2^255 - 19`` (so the top bit is clear too)."""
    top = points[:, 31]
    # at least 2^255 - 19: 0x7f on top, 0xff in between, at least 0xed at the bottom
    high = (top == 0x7F) & np.all(points[:, 1:31] == 0xFF, axis=1) & (points[:, 0] >= 0xED)
    return not bool(np.any(top > 0x7F) or np.any(high))


def blind(points: np.ndarray, scalar: int) -> np.ndarray:
    """``scalar · P`` for each point (rows of ``uint8 (n, 32)``, u-coordinates), in the same
    order, by X25519; ``scalar`` is clamped (see :func:`random_scalar`). :class:`PsiError`
    for a row that is not canonical or whose product is of small order."""
    mult = _nacl().crypto_scalarmult
    if not _clamped(scalar):
        raise ValueError("scalars are clamped: multiples of 8 in [2^254, 2^255)")
    key = scalar.to_bytes(POINT_BYTES, "little")
    checked = _points(points)
    if not _canonical(checked):
        raise PsiError()
    data = checked.tobytes()
    rows = [data[i : i + POINT_BYTES] for i in range(0, len(data), POINT_BYTES)]

    def work(chunk: Sequence[bytes]) -> bytes:
        out = bytearray()
        try:
            for row in chunk:
                out += mult(key, row)
        except Exception:  # libsodium refuses an all-zero (small-order) result
            raise PsiError() from None
        return bytes(out)

    out = _chunked(work, rows)
    return np.frombuffer(out, dtype=np.uint8).reshape(-1, POINT_BYTES).copy()


def _shuffled_and_blinded(
    ids: Sequence[str | bytes], domain: str, key: int
) -> tuple[np.ndarray, np.ndarray]:
    """A secret order of ``ids`` (position -> row), drawn from the OS's CSPRNG so that the
    other party cannot undo it, and the ids in that order, hashed and blinded by ``key``."""
    if len(set(ids)) != len(ids):
        raise ValueError("ids must be unique")
    order = np.random.Generator(np.random.PCG64(secrets.randbits(128))).permutation(len(ids))
    return order, blind(hash_ids([ids[i] for i in order], domain=domain), key)


class PsiSender:
    """The side that learns only the final intersection (a VFL member). ``key``, this side's
    secret scalar, is fresh by default; give one only to reproduce an exchange in a test:
    the receiver must never know it."""

    def __init__(self, ids: Sequence[str | bytes], *, domain: str, key: int | None = None) -> None:
        if key is not None and not _clamped(key):
            raise ValueError("key must be a clamped X25519 scalar (see random_scalar)")
        self.size = len(ids)
        self._key = random_scalar() if key is None else key
        self._order, self._sent = _shuffled_and_blinded(ids, domain, self._key)

    def blinded(self) -> np.ndarray:
        """To the receiver: own ids under own key, in a secret order."""
        return self._sent

    def reblind(self, points: np.ndarray) -> np.ndarray:
        """To the receiver: its offer under this side's key too, same order."""
        return blind(points, self._key)

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """The receiver's aligned positions into the sent list, as own row indices."""
        pos = np.asarray(positions)
        if pos.ndim != 1 or pos.dtype.kind not in "iu":
            raise PsiError()
        pos = pos.astype(np.int64)
        outside = len(pos) and (pos.min() < 0 or pos.max() >= self.size)
        if outside or len(np.unique(pos)) != len(pos):
            raise PsiError()
        return self._order[pos]


@dataclass(frozen=True, slots=True)
class Match:
    """For each of the receiver's rows, the position in one sender's list holding the same
    id, or -1."""

    positions: np.ndarray


class PsiReceiver:
    """The side that computes the intersection (the VFL master), with any number of
    senders: one offer for all, one :meth:`match` per sender."""

    def __init__(self, ids: Sequence[str | bytes], *, domain: str) -> None:
        self.size = len(ids)
        self._key = random_scalar()
        self._order, self._offer = _shuffled_and_blinded(ids, domain, self._key)

    def offer(self) -> np.ndarray:
        """To every sender: own ids under own key, in a secret order."""
        return self._offer

    def match(self, sent: np.ndarray, reblinded: np.ndarray) -> Match:
        """Which of own rows a sender holds, from its blinded ids and its reblinding of the
        offer (:meth:`PsiSender.blinded`, :meth:`PsiSender.reblind`)."""
        mine = _points(reblinded)  # k_s·k_r·H(a), in the offer's order
        if len(mine) != self.size:
            raise PsiError()
        theirs = blind(sent, self._key)  # k_r·k_s·H(b), in the sender's order
        index = {bytes(p): i for i, p in enumerate(theirs)}
        if len(index) != len(theirs):
            raise PsiError()  # repeated points: the sender's ids were not unique
        positions = np.full(self.size, -1, dtype=np.int64)
        data = mine.tobytes()
        for j in range(self.size):
            point = data[j * POINT_BYTES : (j + 1) * POINT_BYTES]
            positions[self._order[j]] = index.get(point, -1)
        return Match(positions=positions)


def intersect(matches: Sequence[Match]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The receiver's rows every sender holds, in the receiver's row order, and for each
    sender the matching positions in its list (what :meth:`PsiSender.rows` takes)."""
    if not matches:
        raise ValueError("intersect needs at least one sender's match")
    held = np.logical_and.reduce([m.positions >= 0 for m in matches])
    rows = np.flatnonzero(held)
    return rows, [m.positions[rows] for m in matches]
