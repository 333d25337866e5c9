"""The public strategy surface: settings derived from constructors, objects in simulations."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated

import numpy as np
import pytest
from pydantic import Field, ValidationError, validate_call

import consortium
from consortium.errors import ConfigError
from consortium.strategy import (
    FedAvg,
    ServerState,
    Strategy,
    build_strategy,
    register_strategy,
    settings_model,
)
from consortium.strategy import FedAvg as PublicFedAvg


class Shrunk(FedAvg):
    """FedAvg whose new model is ``keep`` of the mean plus the rest of the old model."""

    @validate_call
    def __init__(
        self,
        *,
        keep: Annotated[float, Field(gt=0, le=1, description="share of the mean")] = 0.5,
        tag: str = "x",
    ) -> None:
        self.keep, self.tag = keep, tag

    def aggregate(self, round, state, acc, failures):  # type: ignore[no-untyped-def]
        new, metrics = super().aggregate(round, state, acc, failures)
        weights = {
            k: (self.keep * v + (1 - self.keep) * state.weights[k]).astype(v.dtype)
            for k, v in new.weights.items()
        }
        return ServerState(round=round, weights=weights), {**metrics, "keep": self.keep}


register_strategy("test_shrunk")(Shrunk)


def test_the_settings_model_is_derived_from_the_constructor():
    model = settings_model(Shrunk)
    schema = model.model_json_schema()
    assert set(schema["properties"]) == {"keep", "tag"}
    assert schema["properties"]["keep"]["description"] == "share of the mean"
    assert model.model_validate({}).keep == 0.5
    with pytest.raises(ValidationError) as err:
        model.model_validate({"keep": 2, "kep": 1})
    assert {e["loc"][0] for e in err.value.errors()} == {"keep", "kep"}
    assert settings_model(FedAvg).model_json_schema()["properties"] == {}


def test_positional_settings_are_refused():
    class Positional(FedAvg):
        def __init__(self, keep: float = 0.5) -> None:
            self.keep = keep

    with pytest.raises(TypeError, match="keyword-only"):
        settings_model(Positional)


def test_a_bad_setting_names_the_field_from_python_and_from_a_job(small_job):
    with pytest.raises(ValidationError, match="keep"):
        Shrunk(keep=0)
    with pytest.raises(ConfigError, match=r"algorithm\.strategy\.args\.keep"):
        build_strategy("test_shrunk", {"keep": 0})
    job = small_job(algorithm__strategy={"name": "test_shrunk", "args": {"keep": 7}})
    with pytest.raises(ConfigError, match=r"algorithm\.strategy\.args\.keep"):
        consortium.run(job, quiet=True)


def test_the_facade_exports_the_built_ins():
    assert PublicFedAvg is FedAvg
    assert isinstance(build_strategy("fedavg", {}), Strategy)


def _final_weights(run_dir) -> dict[str, np.ndarray]:
    with np.load(run_dir / "model.npz", allow_pickle=False) as archive:
        return {k: archive[k] for k in archive.files}


def test_a_strategy_object_runs_in_a_simulation_and_is_named_in_the_job(tmp_path, small_job):
    """keep=1 is FedAvg exactly; a registered name and an object give the same run."""
    job = small_job()
    plain = consortium.run(job, out=tmp_path / "plain", quiet=True)
    same = consortium.run(job, out=tmp_path / "same", quiet=True, strategy=Shrunk(keep=1.0))
    named = consortium.run(
        small_job(algorithm__strategy={"name": "test_shrunk", "args": {"keep": 0.3}}),
        out=tmp_path / "named",
        quiet=True,
    )
    obj = consortium.run(job, out=tmp_path / "obj", quiet=True, strategy=Shrunk(keep=0.3))
    assert plain.ok and same.ok and named.ok and obj.ok
    for name, arr in _final_weights(tmp_path / "plain").items():
        np.testing.assert_array_equal(_final_weights(tmp_path / "same")[name], arr)
        np.testing.assert_array_equal(
            _final_weights(tmp_path / "named")[name], _final_weights(tmp_path / "obj")[name]
        )
    assert obj.metrics["accuracy"] == named.metrics["accuracy"]
    assert obj.metrics["accuracy"] != plain.metrics["accuracy"]
    resolved = json.loads((tmp_path / "obj" / "summary.json").read_text())
    assert resolved["status"] == "completed"
    assert "python:Shrunk" in (tmp_path / "obj" / "job.yaml").read_text()
    # the user's job mapping is left as it was
    assert job["algorithm"]["strategy"] == small_job()["algorithm"]["strategy"]


def test_objects_are_refused_for_other_launchers_and_when_not_strategies(tmp_path, small_job):
    with pytest.raises(ConfigError, match="inproc launcher only"):
        consortium.run(small_job(), launcher="processes", strategy=Shrunk(), out=tmp_path / "r")
    with pytest.raises(ConfigError, match="must be a consortium.strategy.Strategy"):
        consortium.run(small_job(), strategy=object(), out=tmp_path / "r")  # type: ignore[arg-type]


class Refusing(Strategy["RefusingRound"]):
    """Every reply refused: the run fails with the strategy's own error, naming why."""

    def begin(self, round, state, *, expected=None):  # type: ignore[no-untyped-def]
        return RefusingRound()

    def aggregate(self, round, state, acc, failures):  # type: ignore[no-untyped-def]
        from consortium.strategy import TooFewUpdates

        why = "; ".join(sorted(failures.values()))
        raise TooFewUpdates("refusing", needed=1, received=0, why=why, advice="none")


class RefusingRound:
    def add(self, party: str, weights: Mapping[str, np.ndarray], meta) -> str | None:  # type: ignore[no-untyped-def]
        return "refused on principle"


def test_a_strategys_refusals_are_recorded_failures(tmp_path, small_job):
    result = consortium.run(small_job(), out=tmp_path / "r", quiet=True, strategy=Refusing())
    assert not result.ok
    assert "refused on principle" in (result.error or "")
