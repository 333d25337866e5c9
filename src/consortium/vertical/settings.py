"""Validated settings of the vertical protocol: the job file's ``algorithm`` section, and the
``model`` section's arguments for each vertical model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from consortium.runtime import ProtocolSettings
from consortium.spec import PluginRef, Strict

__all__ = [
    "MIN_TEST_KEY_BITS",
    "LinearArgs",
    "NetRef",
    "PaillierSettings",
    "SplitNNArgs",
    "VerticalSettings",
]

# The floor for `algorithm.paillier.key_bits`. Keys below 2048 bits are for tests only (the
# arbiter logs a warning); below 512 bits a modulus is factored in hours on one machine and
# leaves too little room for the fixed-point values of a gradient.
MIN_TEST_KEY_BITS = 512


class PaillierSettings(Strict):
    """The arbitered mode's encryption: the arbiter's key size, the fixed-point precision
    and the worker processes each party may use for the costly steps."""

    key_bits: int = Field(
        default=2048,
        ge=MIN_TEST_KEY_BITS,
        le=8192,
        multiple_of=64,
        description="bits of the arbiter's Paillier modulus; 2048 (about 112-bit security) "
        "unless this is a test: smaller keys are for tests only",
    )
    precision: int = Field(
        default=32,
        ge=16,
        le=64,
        description="fractional bits of the fixed-point encoding (a resolution of "
        "2^-precision on every encrypted value)",
    )
    workers: int = Field(
        default=0,
        ge=0,
        le=64,
        description="worker processes per party for obfuscators, X^T [[d]] and decryption; "
        "0: everything in the party's own process",
    )


class VerticalSettings(ProtocolSettings):
    """How the master drives training; every party reads the same settings."""

    protocol: Literal["vertical"] = "vertical"
    mode: Literal["honest", "arbitered"] = Field(
        default="honest",
        description="honest: partial outputs and gradients travel in the clear; arbitered: "
        "they travel encrypted under the arbiter's Paillier key and the arbiter decrypts "
        "only masked values (linreg and logreg; see consortium.vertical.visibility)",
    )
    paillier: PaillierSettings = Field(
        default_factory=PaillierSettings, description="arbitered mode only"
    )
    task: Literal["train", "predict"] = Field(
        default="train",
        description="predict: load each party's saved part from parts_dir and predict for "
        "the aligned records",
    )
    rounds: PositiveInt = Field(default=10, description="epochs over the aligned training rows")
    batch_size: PositiveInt | None = Field(
        default=64, description="rows per step; null: the whole training set (gradient descent)"
    )
    lr: PositiveFloat = 0.1
    momentum: float = Field(default=0.0, ge=0, lt=1, description="split networks only")
    l2: NonNegativeFloat = Field(
        default=0.0,
        description="penalty l2/2 * ||W||^2 on every weight (not the intercept); for the "
        "exact solver, ridge regression with sklearn's alpha = l2 * training rows",
    )
    solver: Literal["gradient", "exact"] = Field(
        default="gradient",
        description="linreg only: exact gives the least-squares (ridge) solution, by "
        "conjugate gradients on the normal equations without pooling features",
    )
    exact_tolerance: PositiveFloat = Field(
        default=1e-12, description="exact solver: stop when |gradient| <= this * |X^T y|"
    )
    shuffle: bool = Field(default=True, description="a new batch order every epoch")
    eval_every: PositiveInt = Field(
        default=1,
        description="score the held-out records every this many epochs (and after the last)",
    )
    parts_dir: str | None = Field(
        default=None,
        description="each party saves (or, to predict, loads) its own part of the model as "
        "<parts_dir>/<party>.npz; '{party}' in the path is replaced by the party's name",
    )
    round_timeout: PositiveFloat = Field(default=300.0, description="seconds to wait for replies")
    join_timeout: PositiveFloat = Field(default=120.0, description="seconds to wait for parties")


class LinearArgs(Strict):
    """``linreg`` and ``logreg`` take no arguments: weights start at zero, the master holds
    the intercept."""


class NetRef(PluginRef):
    """A registered network (``mlp``, ``resnet``, ``efficientnet``) and its arguments."""


class SplitNNArgs(Strict):
    """A split neural network: a bottom network at every party that holds features, their
    outputs combined at the master, and the master's top network."""

    bottom: NetRef = NetRef(name="mlp")
    embedding: PositiveInt = Field(default=16, description="width of each bottom's output")
    combine: Literal["concat", "sum", "mean"] = "concat"
    top: NetRef = NetRef(name="mlp")
