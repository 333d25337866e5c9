"""The package surface: sorted exports, a light import, and a clear error without gmpy2."""

from __future__ import annotations

import ast
import importlib
import pathlib
import subprocess
import sys

import pytest

PACKAGES = ["consortium.privacy", "consortium.privacy.paillier"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_lists_the_public_names(name):
    module = importlib.import_module(name)
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and not isinstance(value, type(sys))
        and attr not in {"annotations", "TYPE_CHECKING", "Any"}
    }
    assert public == set(module.__all__)
    assert len(set(module.__all__)) == len(module.__all__)
    assert list(module.__all__) == sorted(module.__all__, key=lambda s: (not s.isupper(), s))


def test_importing_does_not_load_gmpy2():
    code = (
        "import sys, consortium, consortium.privacy.paillier;"
        "assert 'gmpy2' not in sys.modules, 'gmpy2 imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_gmpy2_names_the_extra_to_install():
    code = (
        "import sys; sys.modules['gmpy2'] = None\n"
        "from consortium.privacy.paillier import PaillierKeypair\n"
        "try:\n"
        "    PaillierKeypair.generate(512, allow_small=True)\n"
        "except ImportError as exc:\n"
        '    assert "consortium[paillier]" in str(exc), exc\n'
        "else:\n"
        "    raise SystemExit('no ImportError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_side_library_does_not_import_from_the_layers_above():
    code = (
        "import sys, consortium.privacy.paillier as p\n"
        "p.PaillierKeypair  # loaded\n"
        "bad = [m for m in sys.modules if m.startswith(('consortium.jobs', 'consortium.horizontal',"
        " 'consortium.vertical', 'consortium.runtime'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_keys_stand_below_the_recipes():
    """keys, primitives, encoding and errors import only one another, even for type
    checking: the recipes (arrays, packing, masking, obfuscators, pool, serial) sit on top."""
    package = "consortium.privacy.paillier"
    below = {"_gmp", "encoding", "errors", "keys", "primitives"}
    folder = pathlib.Path(importlib.import_module(package).__file__).parent
    for name in sorted(below):
        imported = set()
        for node in ast.walk(ast.parse((folder / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(package):
                if node.module == package:
                    imported |= {alias.name for alias in node.names}
                else:
                    imported.add(node.module.removeprefix(package + ".").split(".")[0])
        assert imported <= below, f"{name} imports {sorted(imported - below)}"
