"""The job file: one strict YAML document naming who takes part and what they do.

Every section is a pydantic model with ``extra="forbid"``: a misspelt key is an error naming
the field. The ``algorithm`` section is validated by the settings model of the protocol it
names (``algorithm.protocol``, default ``horizontal``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, NonNegativeInt, PositiveInt, model_validator

from consortium.spec import PluginRef, Strict

__all__ = [
    "ChannelSpec",
    "ColumnSpec",
    "DataSpec",
    "JobSpec",
    "MlflowSpec",
    "ModelInit",
    "ModelSpec",
    "RoleBinding",
    "RoleSpec",
    "RuntimeSpec",
    "TlsSpec",
    "TopologySpec",
    "TrackingSpec",
]


class RoleSpec(Strict):
    count: PositiveInt = 1
    program: str | None = Field(
        default=None, description="the protocol's program this role runs; default: the role name"
    )


class ChannelSpec(Strict):
    name: str = Field(min_length=1)
    between: tuple[str, str]
    mode: Literal["all", "tree", "ring"] = Field(
        default="all", description="all pairs; tree: second role reports to first; ring"
    )


class TopologySpec(Strict):
    template: str = "star"
    roles: dict[str, RoleSpec]
    channels: list[ChannelSpec] = Field(default_factory=list)
    hub: str | None = None


class ColumnSpec(Strict):
    """Vertical protocols: a range of the dataset's feature columns, cut among the parties
    of the role. ``blocks``: contiguous runs of columns ``[start, stop)``; ``strips``: the
    image columns ``[start, stop)`` of an image dataset (all pixel rows), cut into vertical
    strips, one per party."""

    start: NonNegativeInt = 0
    stop: PositiveInt | None = Field(default=None, description="default: the last column")
    layout: Literal["blocks", "strips"] = "blocks"


class RoleBinding(Strict):
    """Which part of the dataset a role's parties hold."""

    split: Literal["train", "test", "none"] = "train"
    partitioner: PluginRef | None = Field(
        default=None, description="split the rows among the role's parties; omit to give each all"
    )
    holdout: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="fraction of each party's rows kept aside as its own test set",
    )
    columns: ColumnSpec | None = Field(
        default=None, description="vertical protocols: the feature columns this role holds"
    )
    coverage: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="vertical protocols: the fraction of the records each party of the role holds",
    )


def _default_bindings() -> dict[str, RoleBinding]:
    return {
        "trainer": RoleBinding(split="train", partitioner=PluginRef(name="iid")),
        "aggregator": RoleBinding(split="test"),
    }


class DataSpec(Strict):
    dataset: PluginRef
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    standardize: bool = True
    roles: dict[str, RoleBinding] = Field(default_factory=_default_bindings)


class ModelInit(Strict):
    """Where training starts: the model another run saved."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: str = Field(
        alias="from",
        min_length=1,
        description="a run directory, or its model.npz; relative to the job file",
    )


class ModelSpec(PluginRef):
    """The registered model by name, with its arguments; ``init`` starts it from a saved
    model of the same architecture instead of its seed."""

    init: ModelInit | None = None


class MlflowSpec(Strict):
    enabled: bool = True
    tracking_uri: str | None = Field(
        default=None, description="default: a local store beside the run directory"
    )
    experiment: str | None = Field(default=None, description="default: the job name")


class TrackingSpec(Strict):
    console: bool = True
    mlflow: MlflowSpec = MlflowSpec()
    curves: bool = Field(
        default=True, description="draw curves.png when the run ends (needs the plot extra)"
    )


class TlsSpec(Strict):
    """Mutual TLS for gRPC. Paths are relative to the job file; ``{party}`` in a path
    becomes each party's name, so one job file serves every party. With no paths, the
    ``processes`` launcher makes throw-away certificates for the run, and ``consortium party``
    wants them as flags (``--tls-ca``, ``--tls-cert``, ``--tls-key``)."""

    ca: str | None = Field(default=None, description="the federation's CA certificate (PEM)")
    cert: str | None = Field(default=None, description="this party's certificate (PEM)")
    key: str | None = Field(default=None, description="this party's private key (PEM, 0600)")
    insecure: bool = Field(
        default=False, description="plain-text gRPC, no identities: for trusted networks only"
    )

    @model_validator(mode="after")
    def _one_way(self) -> TlsSpec:
        given = [n for n in ("ca", "cert", "key") if getattr(self, n) is not None]
        if self.insecure and given:
            raise ValueError(f"insecure: true cannot be combined with {', '.join(given)}")
        if given and len(given) != 3:
            raise ValueError("give ca, cert and key together (or none of them)")
        return self

    @property
    def paths(self) -> tuple[str, str, str] | None:
        if self.ca is None or self.cert is None or self.key is None:
            return None
        return self.ca, self.cert, self.key


class RuntimeSpec(Strict):
    launcher: str = "inproc"
    workers: PositiveInt = Field(
        default=1,
        description=(
            "in-process launcher: threads that run the parties' work; 1 runs it on the"
            " threads that send to them, in a fixed order"
        ),
    )
    hub_address: str = Field(
        default="127.0.0.1:0", description="where the hub listens under the processes launcher"
    )
    chunk_bytes: PositiveInt = Field(default=4 * 2**20, description="gRPC streaming chunk size")
    checkpoint_every: NonNegativeInt = Field(
        default=1,
        description="the hub saves checkpoint.npz in the run directory every this many rounds "
        "and after the last (0: never), for consortium run --resume",
    )
    tls: TlsSpec = TlsSpec()


class JobSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    seed: int = 0
    plugins: list[str] = Field(
        default_factory=list, description="modules each party imports to register its plugins"
    )
    topology: TopologySpec
    data: DataSpec | None = Field(
        default=None, description="what each role holds; the protocol says whether it is needed"
    )
    model: ModelSpec | None = None
    algorithm: dict[str, Any]
    tracking: TrackingSpec = TrackingSpec()
    runtime: RuntimeSpec = RuntimeSpec()
