"""Workflows: steps as data, validated against the registries of step and operation types.

A workflow is a list of steps. Each step type says *where* its operation runs and how data
moves (the distributions, see :mod:`consortium.analytics.dag`):

* ``initialize`` / ``finalize``: on the coordinator alone, before / after the rest (e.g. a
  model's start);
* ``parallel``: on every worker at once, the state *distributed* to them and their answers
  *collected* (added up by secure summation);
* ``round_robin``: on one worker after another, each handing its output to the next
  (*arranged*); only operations whose per-party output is meant to be seen (models);
* ``sequential``: its steps in order; ``iterate``: its steps ``times`` times, the state
  carried from each iteration to the next.

The JSON form (``Workflow.model_dump(mode="json")``) is what the job file holds and what
travels; in Python the same steps compose as objects::

    Workflow(steps=[
        Parallel(operation=op("mean", query=Query(table="t"), column="age")),
        Iterate(times=5, steps=[Parallel(operation=op("train", ...))]),
    ])
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, PositiveInt, model_validator

from consortium.analytics.operations import OperationRef
from consortium.spec import Strict

__all__ = [
    "STEP_TYPES",
    "Finalize",
    "Initialize",
    "Iterate",
    "Parallel",
    "RoundRobin",
    "Sequential",
    "Step",
    "Workflow",
    "op",
]

STEP_TYPES = ("initialize", "parallel", "round_robin", "sequential", "iterate", "finalize")
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def op(name: str, **args: Any) -> OperationRef:
    """An operation reference from Python values (queries and filters become their JSON)."""
    plain = {
        k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v for k, v in args.items()
    }
    return OperationRef(name=name, args=plain)


class _Step(Strict):
    id: str | None = Field(default=None, pattern=_ID, description="default: its position")


class _Placed(_Step):
    operation: OperationRef

    @model_validator(mode="after")
    def _placed(self) -> _Placed:
        where = self.operation.operation.placement
        wanted = "coordinator" if isinstance(self, Initialize | Finalize) else "workers"
        if where != wanted:
            raise ValueError(
                f"operation {self.operation.name!r} runs on the {where}, so it cannot be a "
                f"{getattr(self, 'step', '?')} step"
            )
        if isinstance(self, RoundRobin) and not self.operation.operation.round_robin:
            raise ValueError(
                f"operation {self.operation.name!r} cannot run round-robin: each party's own "
                "answer would be seen; use a parallel step (its answers are summed securely)"
            )
        return self


class Initialize(_Placed):
    step: Literal["initialize"] = "initialize"


class Finalize(_Placed):
    step: Literal["finalize"] = "finalize"


class Parallel(_Placed):
    step: Literal["parallel"] = "parallel"


class RoundRobin(_Placed):
    step: Literal["round_robin"] = "round_robin"


class Sequential(_Step):
    step: Literal["sequential"] = "sequential"
    steps: list[Step] = Field(min_length=1)


class Iterate(_Step):
    step: Literal["iterate"] = "iterate"
    times: PositiveInt
    steps: list[Step] = Field(min_length=1)


def _known_step(value: Any) -> Any:
    kind = value.get("step") if isinstance(value, dict) else getattr(value, "step", None)
    if kind not in STEP_TYPES:
        raise ValueError(f"unknown step type {kind!r}; choose one of: {', '.join(STEP_TYPES)}")
    return value


Step = Annotated[
    Initialize | Parallel | RoundRobin | Sequential | Iterate | Finalize,
    Field(discriminator="step"),
    BeforeValidator(_known_step),
]
Sequential.model_rebuild()
Iterate.model_rebuild()


class Workflow(Strict):
    """The steps a researcher asks for, in order."""

    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _ids_unique(self) -> Workflow:
        seen: set[str] = set()

        def walk(steps: list[Any]) -> None:
            for s in steps:
                if s.id is not None:
                    if s.id in seen:
                        raise ValueError(f"step id {s.id!r} is used twice")
                    seen.add(s.id)
                if isinstance(s, Sequential | Iterate):
                    walk(s.steps)

        walk(self.steps)
        return self

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
