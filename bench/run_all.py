"""Run every benchmark in ``bench/`` with its quick arguments, one after the other.

A benchmark is any ``bench/*.py`` other than this file and files whose name starts with an
underscore (helpers). Each may declare its quick arguments in a module-level constant::

    QUICK_ARGS: list[str] = ["--repeat", "1"]

which is read by parsing the file (``ast``), never by importing or running it; a script
without the constant runs with no arguments. Each script runs in its own subprocess with
BLAS threads pinned to 1 (on a small shared machine, BLAS using every core in every worker
livelocks), from the repository root, its output passed straight through. The exit status
is non-zero if any script failed.

Usage: ``python bench/run_all.py [NAME ...]`` (``make bench``); names (file stems) pick a
subset, ``--list`` prints the commands without running them.
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PINNED = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}


def quick_args(path: Path) -> list[str]:
    """The literal list of strings ``path`` assigns to ``QUICK_ARGS``, or ``[]``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if not any(isinstance(t, ast.Name) and t.id == "QUICK_ARGS" for t in targets):
            continue
        try:
            args = ast.literal_eval(value)
        except ValueError:
            args = None
        if not isinstance(args, list | tuple) or not all(isinstance(a, str) for a in args):
            raise ValueError(f"{path}:{node.lineno}: QUICK_ARGS must be a literal list of strings")
        return list(args)
    return []


def scripts(names: list[str]) -> list[Path]:
    found = [
        p
        for p in sorted(BENCH.glob("*.py"))
        if p.resolve() != Path(__file__).resolve() and not p.name.startswith("_")
    ]
    unknown = set(names) - {p.stem for p in found}
    if unknown:
        raise SystemExit(f"no benchmark named {sorted(unknown)} in {BENCH}")
    return [p for p in found if not names or p.stem in names]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("names", nargs="*", help="benchmarks to run (file stems); all if none")
    parser.add_argument("--list", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args()
    env = {**os.environ, **PINNED}
    failed: list[str] = []
    for path in scripts(args.names):
        shown = f"{Path(sys.executable).name} {path.relative_to(BENCH.parent)}"
        try:
            extra = quick_args(path)
        except (SyntaxError, ValueError) as exc:  # one broken script does not stop the others
            print(f"\n## {shown}: cannot read QUICK_ARGS: {exc}", file=sys.stderr, flush=True)
            failed.append(f"{path.name} (QUICK_ARGS)")
            continue
        shown = " ".join([shown, *extra])
        if args.list:
            print(shown)
            continue
        print(f"\n## {shown}\n", flush=True)
        started = time.perf_counter()
        cmd = [sys.executable, str(path), *extra]
        code = subprocess.run(cmd, cwd=BENCH.parent, env=env, check=False).returncode
        print(f"\n(exit {code}, {time.perf_counter() - started:.1f} s)", flush=True)
        if code:
            failed.append(f"{path.name} (exit {code})")
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
