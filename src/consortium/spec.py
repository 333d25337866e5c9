"""Base pieces of every validated configuration: strict models and plugin references."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PluginRef", "Strict"]


class Strict(BaseModel):
    """A configuration model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PluginRef(Strict):
    """A registered plugin by name, with the arguments its factory takes."""

    name: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)
