"""Paillier in vertical FL: Consortium against python-paillier (``phe``), same run, same key.

Two workloads (issue "Vertical FL", performance):

* **a vector of 10,000 floats**: encrypted by us packed (several fixed-point values per
  plaintext, ``Packing()``) with the pool's fixed-base obfuscators, once with the
  obfuscators' cost included (table built in the timed span) and once with a precomputed
  pool (the online cost); decrypted and unpacked. phe encrypts and decrypts float by float;
  it is timed on ``--phe-sample`` of the floats and its per-float rate scaled to the vector
  (its cost is linear in the floats).
* **one arbitered logistic-regression batch**: ``--rows`` x ``--features`` split over the
  master (``ceil(features / 3)`` columns, the labels, the intercept) and two members; the
  step of :mod:`consortium.vertical.encrypted` with each party's own ``Keyring``: the
  members encrypt their partial outputs, the master adds them to its own into ``[[z]]``,
  forms ``[[s d]]`` (Taylor link) and re-randomises it, each party computes its
  ``X_p^T [[s d]]`` and masks it, the arbiter decrypts, each party unmasks. phe runs the same
  arithmetic with its ``EncryptedNumber`` (float products, additions, ``obfuscate``,
  decryption). Both gradients are checked against numpy on the plaintexts. Serial: every
  party's work in this one process, one after the other.

phe is GPL-licensed and only a baseline here: the library never imports it.

Usage: ``python bench/vfl_paillier.py [--bits 2048] [--floats 10000] [--rows 250
--features 100] [--repeat 2] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import phe_module, timed

from consortium.privacy.paillier import (
    ObfuscatorPool,
    Packing,
    PaillierKeypair,
    ParallelPaillier,
    PublicKey,
    decrypt_packed,
    encrypt_packed,
)
from consortium.vertical.encrypted import (
    Keyring,
    decrypt_masked,
    gradient_bound,
    residual_bound,
    scaled_residual,
    taylor_residual,
)
from consortium.vertical.settings import PaillierSettings

QUICK_ARGS: list[str] = [
    "--bits", "1024", "--floats", "2000", "--phe-sample", "50",
    "--rows", "40", "--features", "12", "--repeat", "1", "--workers", "2",
]  # fmt: skip


# ----- a vector of floats ------------------------------------------------------------------


def vector(args: argparse.Namespace, keys: PaillierKeypair, phe: Any, rows: list[dict]) -> None:
    pk, sk = keys.public_key, keys.private_key
    x = np.random.default_rng(1).uniform(-1, 1, size=args.floats)
    packing = Packing()

    def cold() -> Any:  # the pool (and its fixed-base table) made inside the timed span
        return encrypt_packed(pk, x, packing, obfuscators=ObfuscatorPool(pk))

    t_cold, packed = timed(cold, args.repeat)
    pool = ObfuscatorPool(pk, size=len(packed.ciphertexts) * args.repeat)
    t_online, packed = timed(lambda: encrypt_packed(pk, x, packing, obfuscators=pool), args.repeat)
    t_dec, got = timed(lambda: decrypt_packed(sk, packed), args.repeat)
    assert np.abs(got - x).max() <= 2.0 ** -(packing.precision - 1)
    n_ct = len(packed.ciphertexts)
    what = f"{args.floats:,} floats"
    rows.append(_row("encrypt " + what, f"ours, packed into {n_ct} ciphertexts", t_cold))
    rows.append(_row("encrypt " + what, "ours, packed, obfuscators precomputed", t_online))
    rows.append(_row("decrypt and unpack " + what, "ours", t_dec))
    if phe is None:
        return
    pub, priv = _phe_keys(phe, keys)
    sample = x[: args.phe_sample]
    t, enc = timed(lambda: [pub.encrypt(float(v)) for v in sample], 1)
    rows.append(_row("encrypt " + what, "phe (rate scaled)", t * args.floats / len(sample)))
    t, dec = timed(lambda: [priv.decrypt(c) for c in enc], 1)
    assert np.allclose(dec, sample, atol=1e-9)
    rows.append(
        _row("decrypt and unpack " + what, "phe (rate scaled)", t * args.floats / len(sample))
    )


# ----- one arbitered logistic-regression batch ---------------------------------------------


class Batch:
    """The data of one batch: three column blocks, the labels, the parties' weights."""

    def __init__(self, rows: int, features: int) -> None:
        rng = np.random.default_rng(2)
        own = -(-features // 3)
        cuts = [own, own + (features - own) // 2]
        x = rng.normal(size=(rows, features))
        self.blocks = np.split(x, cuts, axis=1)  # master, member-0, member-1
        self.weights = [rng.normal(scale=0.1, size=(b.shape[1], 1)) for b in self.blocks]
        self.bias = np.array([0.05])
        self.y = (rng.random(rows) < 0.5).astype(np.int64)
        self.rows = rows

    def plain_gradients(self) -> list[np.ndarray]:
        """numpy on the plaintexts: [X_0 1]^T d, X_1^T d, X_2^T d with the Taylor link."""
        z = sum(b @ w for b, w in zip(self.blocks, self.weights, strict=True)) + self.bias
        d = taylor_residual(z, self.y, task="classification", n_outputs=1)
        master = np.hstack([self.blocks[0], np.ones((self.rows, 1))])
        return [master.T @ d] + [b.T @ d for b in self.blocks[1:]]


def ours_step(
    batch: Batch, rings: list[Keyring], private: Any, arbiter: ParallelPaillier | None = None
) -> list[np.ndarray]:
    master, *members = rings
    precision = master.encoding.precision
    # members: [[X_p W_p]], on the wire
    wires = []
    for ring, block, weight in zip(members, batch.blocks[1:], batch.weights[1:], strict=True):
        enc = ring.encrypt(block @ weight)
        wires.append((ring.to_wire(enc), enc.exponent))
    # master: [[z]], [[s d]], re-randomised for the members
    shape = (batch.rows, 1)
    parts = [master.from_wire(w, exponent=e, shape=shape, bound=master.limit) for w, e in wires]
    z = parts[0] + parts[1] + (batch.blocks[0] @ batch.weights[0] + batch.bias)
    sd, scale = scaled_residual(z, batch.y, task="classification", n_outputs=1)
    sd_wire = master.to_wire(sd)
    # the public bound on |s d| the master announces, for every party's packing
    bits = residual_bound("classification", 1, len(rings), precision).bit_length()
    # every party: X_p^T [[s d]], packed and masked; the arbiter decrypts; the party unmasks
    x_master = np.hstack([batch.blocks[0], np.ones((batch.rows, 1))])
    out = []
    for ring, x in zip(rings, [x_master, *batch.blocks[1:]], strict=True):
        mine = (
            sd
            if ring is master
            else ring.from_wire(sd_wire, exponent=sd.exponent, shape=shape, bound=1 << bits)
        )
        wire, secret = ring.masked(ring.gradient(x, mine), bound=gradient_bound(bits, precision))
        residues = decrypt_masked(private, wire, arbiter)
        out.append(ring.unmask(secret, residues, scale))
    return out


def phe_step(phe: Any, batch: Batch, pub: Any, priv: Any) -> list[np.ndarray]:

    encrypted = [
        [pub.encrypt(float(v)) for v in (block @ weight)[:, 0]]
        for block, weight in zip(batch.blocks[1:], batch.weights[1:], strict=True)
    ]
    own = (batch.blocks[0] @ batch.weights[0] + batch.bias)[:, 0]
    sd = []
    for i in range(batch.rows):
        z = encrypted[0][i] + encrypted[1][i] + float(own[i])
        c = z + float(2 - 4 * batch.y[i])  # [[s d]] with s = 4 B
        c.obfuscate()  # re-randomised before it goes to the members
        sd.append(c)
    scale = 4 * batch.rows
    x_master = np.hstack([batch.blocks[0], np.ones((batch.rows, 1))])
    plain_sd = [g * scale for g in batch.plain_gradients()]  # only to size phe's slots
    out = []
    for x, expected in zip([x_master, *batch.blocks[1:]], plain_sd, strict=True):
        accs = []
        for j in range(x.shape[1]):
            acc = sd[0] * float(x[0, j])
            for i in range(1, batch.rows):
                acc = acc + sd[i] * float(x[i, j])
            accs.append(acc)
        out.append(_phe_masked_decryption(phe, accs, expected, pub, priv) / scale)
    return out


def _phe_masked_decryption(
    phe: Any, accs: list[Any], expected: np.ndarray, pub: Any, priv: Any
) -> np.ndarray:
    """Ours packs a party's gradient before masking it (``privacy.paillier.masking``); phe
    does the same arithmetic with its own operations: the values brought to one exponent,
    packed by Horner's rule (a ciphertext times ``2^W`` plus the next), each packed value
    masked in Z_n, re-randomised and decrypted, then unpacked. Its slots are sized from the
    plaintext gradient (a baseline's shortcut; ours bounds them from public limits), which
    gives it at least as many values per decryption as ours."""
    import secrets

    e = min(a.exponent for a in accs)
    accs = [a.decrease_exponent_to(e) for a in accs]
    bound = int(np.abs(expected).max() * 16.0**-e * 2) + 1
    width = (2 * bound).bit_length()
    per = (pub.n.bit_length() - 1) // width
    values: list[int] = []
    for start in range(0, len(accs), per):
        group = accs[start : start + per]
        acc = group[-1]
        for c in reversed(group[:-1]):
            acc = acc * (1 << width) + c
        offset = bound * sum(1 << (width * j) for j in range(len(group)))
        mask = secrets.randbelow(pub.n)
        raw = acc.ciphertext(be_secure=False) * (1 + (mask + offset) % pub.n * pub.n)
        masked = phe.EncryptedNumber(pub, raw % pub.nsquare, e)
        masked.obfuscate()
        packed = (priv.raw_decrypt(masked.ciphertext(be_secure=False)) - mask) % pub.n
        slot = (1 << width) - 1
        values += [((packed >> (width * j)) & slot) - bound for j in range(len(group))]
    return np.array([v * 16.0**e for v in values]).reshape(-1, 1)


def ours_variant(
    batch: Batch, keys: PaillierKeypair, args: argparse.Namespace, workers: int, rows: list[dict]
) -> None:
    """Our step on parties with ``workers`` processes each (0: serial): with the obfuscators
    computed in the step (serial only), with them precomputed before the batch, and (with
    workers) in the steady state of consecutive batches, where each party's keyring has the
    next batch's obfuscators made by its workers while the batch goes on."""
    what = f"arbitered logreg batch {args.rows}x{args.features}"
    public = PublicKey(int(keys.public_key.n))  # what each party rebuilds from the wire
    config = PaillierSettings(key_bits=args.bits, precision=32, workers=workers)
    rings = [Keyring(public, config) for _ in range(3)]
    arbiter = ParallelPaillier(workers=workers) if workers else None
    # obfuscators a party uses per batch: its outputs or [[s d]] (rows), and at most one per
    # value of its masked gradient (fewer, packed)
    needed = [batch.rows + x.shape[1] + 1 for x in batch.blocks]
    expected = batch.plain_gradients()
    name = "serial" if not workers else f"{workers} worker processes per party"
    try:
        t0 = time.perf_counter()
        for ring in rings:  # the fixed-base tables: once per party and key
            ring.pool.fill(1, parallel=ring.parallel)
        if arbiter is not None:  # its worker processes started
            arbiter.obfuscators(public, 4 * workers)
        setup = time.perf_counter() - t0
        if not workers:
            t, got = timed(lambda: ours_step(batch, rings, keys.private_key), args.repeat)
            _check(got, expected)
            rows.append(_row(what, f"ours, {name}, obfuscators in the step", t, setup_s=setup))
        best = math.inf
        for _ in range(args.repeat):
            for ring, count in zip(rings, needed, strict=True):
                ring.pool.clear()
                # twice the batch's: a keyring with workers keeps that many ready or in the
                # making, and would otherwise start the next batch's during this one
                ring.pool.fill(2 * count, parallel=ring.parallel)
            t0 = time.perf_counter()
            got = ours_step(batch, rings, keys.private_key, arbiter)
            best = min(best, time.perf_counter() - t0)
            _check(got, expected)
        rows.append(_row(what, f"ours, {name}, obfuscators precomputed", best))
        if workers:  # what the protocol does: each step leaves the next one's in the making
            for ring in rings:
                ring.pool.clear()
            _check(ours_step(batch, rings, keys.private_key, arbiter), expected)  # warm-up
            steps = max(3, args.repeat)
            t0 = time.perf_counter()
            for _ in range(steps):  # the mean of consecutive steps: the steady state's rate
                got = ours_step(batch, rings, keys.private_key, arbiter)
            t = (time.perf_counter() - t0) / steps
            _check(got, expected)
            label = f"ours, {name}, obfuscators made in the background (mean of {steps})"
            rows.append(_row(what, label, t))
    finally:
        for ring in rings:
            ring.close()
        if arbiter is not None:
            arbiter.close()


def _check(got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-6)


def arbitered(args: argparse.Namespace, keys: PaillierKeypair, phe: Any, rows: list[dict]) -> None:
    batch = Batch(args.rows, args.features)
    for workers in sorted({0, args.workers}):
        ours_variant(batch, keys, args, workers, rows)
    if phe is None:
        return
    pub, priv = _phe_keys(phe, keys)
    t, got = timed(lambda: phe_step(phe, batch, pub, priv), 1)
    _check(got, batch.plain_gradients())
    rows.append(
        _row(f"arbitered logreg batch {args.rows}x{args.features}", "phe, serial (same steps)", t)
    )


# ----- the report --------------------------------------------------------------------------


def _phe_keys(phe: Any, keys: PaillierKeypair) -> tuple[Any, Any]:
    p, q = keys.private_key.primes
    pub = phe.PaillierPublicKey(int(keys.public_key.n))
    return pub, phe.PaillierPrivateKey(pub, int(p), int(q))


def _row(operation: str, implementation: str, seconds: float, **extra: Any) -> dict:
    print(f"  {operation:<42} {implementation:<42} {seconds:9.3f} s", flush=True)
    return {"operation": operation, "implementation": implementation, "seconds": seconds, **extra}


def markdown(rows: list[dict]) -> str:
    phe_s = {r["operation"]: r["seconds"] for r in rows if r["implementation"].startswith("phe")}
    lines = [
        "| operation | implementation | seconds | speed-up vs phe |",
        "| --- | --- | ---: | ---: |",
    ]
    for r in rows:
        ref = phe_s.get(r["operation"])
        if ref is None or r["implementation"].startswith("phe"):
            ratio = ""
        else:
            speedup = ref / r["seconds"]
            ratio = f"{speedup:.0f}x" if speedup >= 100 else f"{speedup:.1f}x"
        lines.append(f"| {r['operation']} | {r['implementation']} | {r['seconds']:.3f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, default=2048)
    parser.add_argument("--floats", type=int, default=10_000)
    parser.add_argument("--phe-sample", type=int, default=300, help="floats phe is timed on")
    parser.add_argument("--rows", type=int, default=250)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=2, help="ours: best of this many")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per party")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    print(f"Paillier in vertical FL: {args.bits}-bit keys", flush=True)
    keys = PaillierKeypair.generate(args.bits, allow_small=args.bits < 2048)
    phe = phe_module()
    rows: list[dict] = []
    vector(args, keys, phe, rows)
    arbitered(args, keys, phe, rows)
    print()
    print(markdown(rows))
    if args.out:
        meta = {"bits": args.bits, "python": platform.python_version(), "args": vars(args)}
        args.out.write_text(json.dumps({"meta": {**meta, "out": None}, "rows": rows}, default=str))


if __name__ == "__main__":
    main()
