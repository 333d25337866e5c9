from __future__ import annotations

import importlib.util
import subprocess
import sys
import types

import pytest

import consortium.ml
from consortium.errors import ConfigError, PluginError
from consortium.ml import MODELS, build_model, load_dataset


def test_import_is_light() -> None:
    code = (
        "import sys, consortium.ml; "
        "heavy = [m for m in ('torch', 'sklearn', 'matplotlib') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_all_is_sorted_and_lists_the_public_names() -> None:
    exported = consortium.ml.__all__

    def isort_style(name: str) -> tuple[int, str]:  # ruff RUF022: CONSTANTS, Classes, functions
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert exported == sorted(exported, key=isort_style)
    public = {
        name
        for name, value in vars(consortium.ml).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name not in {"annotations", "TYPE_CHECKING", "Any"}
    }
    lazy = {"CNN", "MLP"}  # loaded on first access (they import torch)
    assert public | lazy == set(exported)
    for name in exported:
        if name in lazy and importlib.util.find_spec("torch") is None:
            continue
        assert getattr(consortium.ml, name) is not None


def test_builtin_models_are_registered() -> None:
    expected = {"cnn", "linreg", "logreg", "mlp", "sk_logreg", "sk_sgd", "sk_sgd_regressor"}
    assert expected <= set(MODELS.names())


def test_consortium_list_shows_the_models() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "consortium", "list"], check=True, capture_output=True, text=True
    ).stdout
    (line,) = [x for x in out.splitlines() if x.startswith("model: ")]
    assert {"cnn", "sk_logreg", "sk_sgd", "sk_sgd_regressor"} <= set(line[7:].split(", "))


def test_unknown_model_lists_the_choices() -> None:
    with pytest.raises(PluginError) as err:
        build_model("resnet", n_features=2, n_classes=2, seed=0)
    assert isinstance(err.value, ConfigError)
    assert "resnet" in str(err.value)
    assert "linreg, logreg, mlp" in str(err.value)


def test_unknown_model_argument_names_it() -> None:
    with pytest.raises(ConfigError) as err:
        build_model("logreg", n_features=2, n_classes=2, seed=0, depth=3)
    assert "'depth'" in str(err.value) and "'logreg'" in str(err.value)
    assert "valid arguments: l2" in str(err.value)


def test_unknown_dataset_is_a_plugin_error() -> None:
    with pytest.raises(PluginError, match="choose one of: breast_cancer, diabetes, digits"):
        load_dataset("cifar", seed=0)
