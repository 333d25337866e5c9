"""Nothing executable crosses a process boundary (DESIGN rule 1): no module of ``src/``
imports pickle and its relatives or calls eval and its relatives, and the loaders that can
run code are only called in their safe form. The scan reads the syntax tree, so a word in a
docstring or a method such as ``module.eval()`` is not mistaken for a use."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src" / "consortium"
MODULES = sorted(SRC.rglob("*.py"))

BANNED_MODULES = {
    "pickle",
    "cPickle",
    "_pickle",
    "cloudpickle",
    "dill",
    "marshal",
    "shelve",
    "joblib",
}
BANNED_BUILTINS = {"eval", "exec", "compile", "__import__"}
UNSAFE_CALLS = {("yaml", "load"), ("yaml", "unsafe_load"), ("yaml", "full_load")}


def findings(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            names = []
        for name in names:
            if name.split(".")[0] in BANNED_MODULES:
                found.append(f"line {node.lineno}: imports {name}")
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in BANNED_BUILTINS:
            found.append(f"line {node.lineno}: calls {func.id}()")
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and (func.value.id, func.attr) in UNSAFE_CALLS
        ):
            found.append(f"line {node.lineno}: calls {func.value.id}.{func.attr}()")
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "load"
            and _names(func.value, "torch")
            and not any(k.arg == "weights_only" and _true(k.value) for k in node.keywords)
        ):
            found.append(f"line {node.lineno}: torch.load without weights_only=True")
        for keyword in node.keywords:
            if keyword.arg == "allow_pickle" and not _false(keyword.value):
                found.append(f"line {node.lineno}: allow_pickle is not False")
    return found


def _names(node: ast.expr, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _true(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _false(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def test_the_scan_sees_the_whole_package():
    assert len(MODULES) > 40
    assert SRC / "wire" / "codec.py" in MODULES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_uses_an_executable_format(path):
    assert findings(ast.parse(path.read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize(
    "code",
    [
        "import pickle",
        "import cloudpickle as cp",
        "from marshal import loads",
        "import dill.settings",
        "eval('1')",
        "exec(code)",
        "__import__(name)",
        "yaml.load(text)",
        "torch.load(path)",
        "torch.load(path, weights_only=False)",
        "np.load(path, allow_pickle=True)",
    ],
)
def test_the_scan_finds_what_it_looks_for(code):
    assert findings(ast.parse(code))


@pytest.mark.parametrize(
    "code",
    [
        "module.eval()",
        "yaml.safe_load(text)",
        "torch.load(path, weights_only=True)",
        "np.load(path, allow_pickle=False)",
        "re.compile('x')",
        "'pickle'",
    ],
)
def test_the_scan_lets_safe_code_be(code):
    assert findings(ast.parse(code)) == []
