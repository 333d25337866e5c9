"""Tasks run in worker processes by :class:`~consortium.privacy.paillier.ParallelPaillier`.

Arguments and results are plain ints, strings, lists and bytes (ciphertexts as fixed-width
big-endian rows), never objects of this library. A task that meets an invalid ciphertext
returns ``None`` rather than raising, so no exception object of ours crosses the boundary.
"""

from __future__ import annotations

import functools

from consortium.privacy.paillier._gmp import gmpy2
from consortium.privacy.paillier.errors import InvalidCiphertext
from consortium.privacy.paillier.keys import PrivateKey, PublicKey
from consortium.privacy.paillier.multiexp import multiexp_rows
from consortium.privacy.paillier.obfuscators import FixedBase, fresh_obfuscators
from consortium.privacy.paillier.rows import join_rows, split_rows


@functools.lru_cache(maxsize=4)
def _fixed_base(n: int) -> FixedBase:
    """This process's fixed-base table for ``n``: built on its first task for the key (about
    0.2 s at 2048 bits), then drawn from by every later one. Worker processes belong to one
    party, so the table's secret base never serves anyone else."""
    return FixedBase(n)


def obfuscators_task(n: int, count: int, width: int, method: str = "textbook") -> bytes:
    """``count`` fresh obfuscators, drawn from this process's CSPRNG (``fixed-base``: from
    this process's table for ``n``)."""
    if method == "fixed-base":
        fixed = _fixed_base(n)
        return join_rows([fixed.draw() for _ in range(count)], width)
    return join_rows(fresh_obfuscators(PublicKey(n), count), width)


@functools.lru_cache(maxsize=4)
def _private_key(p: int, q: int) -> PrivateKey:
    """This process's key, with its CRT values (~3 ms at 2048 bits): made on its first
    task, kept for the later ones. Worker processes belong to the key's owner."""
    return PrivateKey(PublicKey(p * q), p, q)


def decrypt_task(p: int, q: int, blob: bytes, width: int, out_width: int) -> bytes | None:
    """Residues of the ciphertexts in ``blob``; ``None`` if any is not a unit below n^2."""
    try:
        return join_rows(_private_key(p, q).raw_decrypt(split_rows(blob, width)), out_width)
    except InvalidCiphertext:
        return None


def multiexp_task(nsq: int, blob: bytes, width: int, rows: list[list[int]], method: str) -> bytes:
    """``prod_j c_j^(row_j) mod n^2`` for each row, over the ciphertexts in ``blob``."""
    bases = split_rows(blob, width)
    return join_rows(multiexp_rows(bases, rows, gmpy2().mpz(nsq), method=method), width)
