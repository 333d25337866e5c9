"""Each package's ``__all__`` lists exactly its public names, and the core import is light."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = [
    "consortium",
    "consortium.wire",
    "consortium.transport",
    "consortium.topology",
    "consortium.runtime",
    "consortium.horizontal",
    "consortium.vertical",
    "consortium.analytics",
    "consortium.ml",
    "consortium.tracking",
    "consortium.jobs",
    "consortium.testing",
    "consortium.security",
    "consortium.privacy",
    "consortium.privacy.paillier",
    "consortium.strategy",
    "consortium.client",
    "consortium.data",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_matches_public_names(name):
    module = importlib.import_module(name)
    declared = set(module.__all__)
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and not (isinstance(value, type(sys)))  # submodules
        and attr not in {"annotations", "TYPE_CHECKING", "Any"}
    }
    lazy = {n for n in declared if n not in vars(module)}
    for n in lazy:  # names served by a module __getattr__ must resolve (given their extra)
        try:
            getattr(module, n)
        except ImportError as exc:
            assert exc.name in {"torch"}, exc
    assert public <= declared, f"public but not in __all__: {sorted(public - declared)}"
    assert len(module.__all__) == len(declared), "duplicates in __all__"


def test_core_import_is_light():
    code = (
        "import sys, consortium, consortium.wire, consortium.transport, consortium.runtime;"
        "heavy = [m for m in ('torch', 'sklearn', 'mlflow', 'matplotlib', 'grpc') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
