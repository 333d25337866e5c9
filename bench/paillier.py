"""Paillier: ``consortium.privacy.paillier`` side by side with python-paillier (``phe``).

Same key material for both (phe's keys are built from our primes), same data, same run.
Measured: key generation; encryptions per second without and with precomputed obfuscators
(and the obfuscators' own rate: textbook ``r^n`` and the pool's default fixed-base ones,
serial and in worker processes); decryptions per second;
ciphertext additions and ciphertext-times-scalar products; ``X^T [[d]]`` for X of
``rows x cols`` by one power per term (naive), by multi-exponentiation (the bucket and the
subset methods), by the cheaper of the two across worker processes, and by phe; and the sum of several encrypted vectors,
packed against unpacked (encrypt, add, decrypt).

phe is GPL-licensed and used here only as a baseline: the library never imports it. Without
it installed, its rows are left out.

Usage: ``python bench/paillier.py [--bits 2048] [--rows 1000 --cols 10] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
from _common import phe_module, timed

from consortium.privacy.paillier import (
    Encoding,
    EncryptedArray,
    ObfuscatorPool,
    Packing,
    PaillierKeypair,
    ParallelPaillier,
    decrypt,
    decrypt_packed,
    encrypt,
    encrypt_packed,
    rmatvec,
)

QUICK_ARGS: list[str] = [
    "--bits", "1024", "--encrypt", "8", "--decrypt", "40", "--rows", "200", "--cols", "4",
    "--sum-parties", "3", "--sum-length", "40", "--workers", "2",
]  # fmt: skip


class Table:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, op: str, impl: str, count: int, seconds: float, **extra: Any) -> None:
        row = {"operation": op, "implementation": impl, "count": count, "seconds": seconds}
        row["per_second"] = count / seconds if seconds > 0 else math.inf
        row.update(extra)
        self.rows.append(row)
        print(f"  {op:<28} {impl:<28} {seconds:9.3f} s", flush=True)

    def markdown(self) -> str:
        phe_rate = {
            r["operation"]: r["per_second"] for r in self.rows if r["implementation"] == "phe"
        }
        lines = [
            "| operation | implementation | n | seconds | per second | speed-up vs phe |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for r in self.rows:
            ref = phe_rate.get(r["operation"])
            speedup = (
                f"{r['per_second'] / ref:.1f}x" if ref and r["implementation"] != "phe" else ""
            )
            lines.append(
                f"| {r['operation']} | {r['implementation']} | {r['count']} | "
                f"{r['seconds']:.3f} | {r['per_second']:,.1f} | {speedup} |"
            )
        return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, default=2048)
    parser.add_argument("--encrypt", type=int, default=30, help="encryptions without a pool")
    parser.add_argument("--decrypt", type=int, default=200)
    parser.add_argument("--rows", type=int, default=1000, help="rows of X (length of [[d]])")
    parser.add_argument("--cols", type=int, default=10, help="columns of X (features)")
    parser.add_argument(
        "--precision", type=int, default=32, help="fractional bits, a multiple of 4"
    )
    parser.add_argument("--sum-parties", type=int, default=4)
    parser.add_argument("--sum-length", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.precision % 4:
        parser.error("--precision must be a multiple of 4 (phe reads exponents in base 16)")

    phe = phe_module()
    rng = np.random.default_rng(args.seed)
    code = Encoding(args.precision)
    table = Table()
    print(f"Paillier benchmark: {args.bits}-bit keys, X {args.rows}x{args.cols}", flush=True)

    # ----- keys ----------------------------------------------------------------------
    t, keys = timed(lambda: PaillierKeypair.generate(args.bits, allow_small=args.bits < 2048))
    table.add("key generation", "ours", 1, t)
    pk, sk = keys.public_key, keys.private_key
    if phe is not None:
        t, _ = timed(lambda: phe.generate_paillier_keypair(n_length=args.bits))
        table.add("key generation", "phe", 1, t)
        p, q = sk.primes
        phe_pub = phe.PaillierPublicKey(int(pk.n))
        phe_priv = phe.PaillierPrivateKey(phe_pub, p, q)

    # ----- encryption ----------------------------------------------------------------
    x = rng.normal(size=args.encrypt)
    t, _ = timed(lambda: encrypt(pk, x, encoding=code))
    table.add("encrypt", "ours, fresh r^n", args.encrypt, t)
    if phe is not None:
        t, _ = timed(lambda: [phe_pub.encrypt(float(v)) for v in x])
        table.add("encrypt", "phe", args.encrypt, t)
    t, _ = timed(lambda: ObfuscatorPool(pk, size=args.encrypt, method="textbook"))
    table.add("precompute obfuscators", "ours, textbook r^n, 1 process", args.encrypt, t)
    t, _ = timed(lambda: ObfuscatorPool(pk, size=args.rows))  # the table's cost included
    table.add("precompute obfuscators", "ours, fixed-base, 1 process", args.rows, t)
    with ParallelPaillier(workers=args.workers) as par:
        par.obfuscators(pk, args.workers)  # start the workers outside the timing
        pool = ObfuscatorPool(pk)
        t, _ = timed(lambda: pool.fill(args.rows, parallel=par))
        label = f"ours, fixed-base, {args.workers} processes"
        table.add("precompute obfuscators", label, args.rows, t)
        d = rng.normal(size=args.rows)
        t, enc_d = timed(lambda: encrypt(pk, d, encoding=code, obfuscators=pool))
        table.add("encrypt", "ours, obfuscators precomputed", args.rows, t)

        # ----- decryption ------------------------------------------------------------
        sub = enc_d[: args.decrypt]
        t, got = timed(lambda: decrypt(sk, sub))
        assert np.allclose(got, d[: args.decrypt], atol=2.0**-args.precision)
        table.add("decrypt", "ours (CRT)", args.decrypt, t)
        t, _ = timed(lambda: par.decrypt(sk, sub))
        table.add("decrypt", f"ours (CRT), {args.workers} processes", args.decrypt, t)
        if phe is not None:
            # The same ciphertexts read by phe: 2^-precision is 16^-(precision / 4).
            exp16 = -(args.precision // 4)
            phe_d = [phe.EncryptedNumber(phe_pub, int(c), exp16) for c in enc_d.ciphertext_list()]
            t, _ = timed(lambda: [phe_priv.decrypt(c) for c in phe_d[: args.decrypt]])
            table.add("decrypt", "phe", args.decrypt, t)

        # ----- addition and scalar product ---------------------------------------------
        t, _ = timed(lambda: enc_d + enc_d, repeat=3)
        table.add("add (ct + ct)", "ours, vectorised", args.rows, t)
        scalars = rng.normal(size=args.rows)
        t, _ = timed(lambda: enc_d * scalars, repeat=3)
        table.add("multiply (ct * float)", "ours, vectorised", args.rows, t)
        if phe is not None:
            t, _ = timed(lambda: [a + a for a in phe_d], repeat=3)
            table.add("add (ct + ct)", "phe", args.rows, t)
            t, _ = timed(lambda: [a * float(s) for a, s in zip(phe_d, scalars, strict=True)])
            table.add("multiply (ct * float)", "phe", args.rows, t)

        # ----- X^T [[d]] --------------------------------------------------------------
        X = rng.normal(size=(args.rows, args.cols))
        expected = X.T @ d
        op = f"X^T [[d]], X {args.rows}x{args.cols}"
        results: dict[str, EncryptedArray] = {}
        t, results["naive"] = timed(lambda: rmatvec(X, enc_d, method="naive"))
        table.add(op, "ours, naive powmod per term", args.rows * args.cols, t)
        t, results["buckets"] = timed(lambda: rmatvec(X, enc_d, method="buckets"))
        table.add(op, "ours, multiexp by buckets", args.rows * args.cols, t)
        t, results["subsets"] = timed(lambda: rmatvec(X, enc_d, method="subsets"))
        table.add(op, "ours, multiexp by subsets", args.rows * args.cols, t)
        t, results["parallel"] = timed(lambda: par.rmatvec(X, enc_d))
        table.add(op, f"ours, multiexp, {args.workers} processes", args.rows * args.cols, t)
        for name, res in results.items():
            err = float(np.max(np.abs(decrypt(sk, res) - expected)))
            assert err < 1e-6 * args.rows, (name, err)
        if phe is not None:

            def phe_xtd() -> list[Any]:
                out = []
                for j in range(args.cols):
                    acc = phe_d[0] * float(X[0, j])
                    for i in range(1, args.rows):
                        acc = acc + phe_d[i] * float(X[i, j])
                    out.append(acc)
                return out

            t, theirs = timed(phe_xtd)
            table.add(op, "phe", args.rows * args.cols, t)
            err = max(abs(phe_priv.decrypt(v) - e) for v, e in zip(theirs, expected, strict=True))
            assert err < 1e-6 * args.rows, ("phe", err)

    # ----- packed against unpacked sums ----------------------------------------------------
    vectors = [rng.normal(size=args.sum_length) for _ in range(args.sum_parties)]
    packing = Packing(precision=args.precision, value_bits=64, headroom_bits=12)
    op = f"sum of {args.sum_parties} vectors of {args.sum_length}"

    def unpacked() -> np.ndarray:
        return decrypt(sk, sum(encrypt(pk, v, encoding=code) for v in vectors))

    def packed() -> np.ndarray:
        return decrypt_packed(sk, sum(encrypt_packed(pk, v, packing) for v in vectors))

    total = args.sum_parties * args.sum_length
    t, a = timed(unpacked)
    table.add(op, "ours, unpacked (encrypt+add+decrypt)", total, t)
    t, b = timed(packed)
    table.add(op, f"ours, packed {packing.slots(pk)} per ciphertext", total, t)
    assert np.allclose(a, sum(vectors)) and np.allclose(b, sum(vectors))

    print()
    print(table.markdown())
    if args.out is not None:
        meta = {
            "bits": args.bits,
            "rows": args.rows,
            "cols": args.cols,
            "precision": args.precision,
            "workers": args.workers,
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        }
        args.out.write_text(json.dumps({"meta": meta, "rows": table.rows}, indent=2))


if __name__ == "__main__":
    main()
