"""Long fuzzing of the wire decoder: any bytes give a Message or our DecodeError.

With atheris installed (``pip install atheris``; optional, not a dependency), this is a
coverage-guided libFuzzer target; it seeds the corpus folder with valid encodings first::

    python fuzz/fuzz_decode.py fuzz/corpus -max_total_time=3600 -rss_limit_mb=4096

Any crash stops the run and leaves the input in ``crash-*``; replay it with
``python fuzz/fuzz_decode.py crash-<id>``. Without atheris the script runs a seeded
random-mutation loop instead (``--runs N --seed S``), a quick smoke test of the same target.
CI runs the bounded Hypothesis version, ``tests/wire/test_decode_fuzz.py``.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

try:
    import atheris
except ImportError:  # the fallback below needs nothing but the standard library
    atheris = None

if atheris is not None:
    with atheris.instrument_imports():
        from consortium.errors import DecodeError
        from consortium.wire import ALLOWED_DTYPES, Limits, Message, decode, encode
else:
    from consortium.errors import DecodeError
    from consortium.wire import ALLOWED_DTYPES, Limits, Message, decode, encode

TIGHT = Limits(max_message_bytes=2**16, max_header_bytes=4096, max_tensors=8, max_ndim=4)


def target(data: bytes) -> None:
    """The property: decode returns a Message or raises DecodeError; nothing else."""
    for limits in (Limits(), TIGHT):
        try:
            msg = decode(data, limits=limits)
        except DecodeError:
            continue
        assert isinstance(msg, Message)
        for arr in msg.tensors.values():
            assert arr.dtype.str in ALLOWED_DTYPES and arr.ndim <= limits.max_ndim
        encode(msg)  # whatever is accepted can be sent on


def seeds() -> list[bytes]:
    """Valid encodings: every wire dtype, a few shapes, metadata of each kind."""
    out = []
    for i, code in enumerate(sorted(ALLOWED_DTYPES)):
        dtype = np.dtype(code)
        shape = (2, 3, 1)[: i % 4]
        arr = np.zeros(shape, dtype=dtype)
        msg = Message(
            kind="fit",
            sender="trainer-1",
            receiver="aggregator",
            job="job:0123456789ab",
            round=i,
            seq=i + 1,
            meta={"n": i, "f": 0.5, "b": True, "s": "x"},
            tensors={"w": arr, "b": np.ones(3, dtype=dtype)},
        )
        out.append(encode(msg))
    return out


def _mutate(rng: random.Random, buf: bytes) -> bytes:
    data = bytearray(buf)
    for _ in range(rng.randint(1, 8)):
        pos = rng.randrange(len(data) + 1)
        op = rng.randrange(4)
        if op == 0 and data:
            data[min(pos, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op == 2:
            del data[pos : pos + rng.randint(1, 16)]
        else:
            data[pos : pos + 4] = rng.choice([0, 1, 64, 2**31, 2**32 - 1]).to_bytes(4, "little")
    return bytes(data)


def _fallback(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="random-mutation fuzzing of decode")
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("inputs", nargs="*", type=Path, help="files to replay instead")
    args = parser.parse_args(argv)
    if args.inputs:
        for path in args.inputs:
            target(path.read_bytes())
        print(f"replayed {len(args.inputs)} input(s): no failure")
        return 0
    rng = random.Random(args.seed)
    pool = seeds()
    for run in range(args.runs):
        data = _mutate(rng, rng.choice(pool))
        try:
            target(data)
        except Exception:
            crash = Path(f"crash-seed{args.seed}-run{run}")
            crash.write_bytes(data)
            print(f"failure on run {run}; input saved to {crash}", file=sys.stderr)
            raise
    print(f"{args.runs} mutated inputs: every one decoded or raised DecodeError")
    return 0


def main() -> int:
    if atheris is None:
        print("atheris is not installed: running the random-mutation fallback", file=sys.stderr)
        return _fallback(sys.argv[1:])
    corpus = next((Path(a) for a in sys.argv[1:] if not a.startswith("-")), None)
    if corpus is not None and corpus.is_dir() and not any(corpus.iterdir()):
        for i, seed in enumerate(seeds()):
            (corpus / f"seed-{i:03d}").write_bytes(seed)
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
