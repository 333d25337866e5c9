"""Loading a job: YAML, ``--set`` overrides, validation, plugin checks, topology expansion.

Validation has no side effects beyond importing the plugin modules the job names. Every
error is a :class:`ConfigError` whose message starts with the file and the field.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from consortium.errors import ConfigError, PluginError
from consortium.jobs.job import LAUNCHERS, LoadedJob
from consortium.jobs.spec import JobSpec
from consortium.registry import Registry, import_plugins
from consortium.runtime import BINDERS, PROGRAMS, PROTOCOLS
from consortium.topology import ChannelDecl, RoleDecl, TopologyDecl, expand
from consortium.tracking import hash_job

__all__ = ["apply_overrides", "load_job", "override_keys", "parse_job"]


def _format(
    exc: ValidationError, source: str, prefix: str = "", overrides: Mapping[str, str] = {}
) -> str:
    """One line per error, each naming where the value came from: the file, or the
    ``--set`` override that gave it (``overrides``: dotted key -> the override as given)."""
    lines = []
    for err in exc.errors():
        parts = [*(prefix.split(".") if prefix else []), *err["loc"]]
        loc = ".".join(str(p) for p in parts)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling)"
        given = [
            item
            for key, item in overrides.items()
            if f"{loc}.".startswith(f"{key}.") or f"{key}.".startswith(f"{loc}.")
        ]
        origin = f"--set {given[-1]}" if given else source
        lines.append(f"{origin}: {loc or '<root>'}: {msg}")
    return "\n".join(lines)


def override_keys(overrides: Iterable[str]) -> dict[str, str]:
    """Each override's dotted key -> the override as given (the last one wins)."""
    return {item.partition("=")[0]: item for item in overrides}


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``path.to.key=value`` overrides; values are parsed as YAML scalars/flows."""
    for item in overrides:
        path, sep, text = item.partition("=")
        if not sep or not path:
            raise ConfigError(f"--set {item!r}: expected path.to.key=value")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML: {exc}") from None
        node = raw
        keys = path.split(".")
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {key!r} is not a section")
            node = child
        node[keys[-1]] = value
    return raw


def _validate(
    model: type[BaseModel],
    data: Any,
    source: str,
    prefix: str = "",
    overrides: Mapping[str, str] = {},
) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format(exc, source, prefix, overrides)) from None


def _check(registry: Registry[Any], name: str, where: str, source: str) -> None:
    try:
        registry.get(name)
    except PluginError as exc:
        raise ConfigError(f"{source}: {where}: {exc}") from None


def _check_plugins(job: LoadedJob) -> None:
    _check(LAUNCHERS, job.spec.runtime.launcher, "runtime.launcher", job.source)
    try:
        binder = BINDERS.get(job.protocol)
    except PluginError as exc:
        raise ConfigError(f"{job.source}: algorithm.protocol: {exc}") from None
    binder.check(job)


def parse_job(
    raw: Any,
    *,
    source: str = "<dict>",
    base_dir: Path | None = None,
    overrides: Mapping[str, str] = {},
) -> LoadedJob:
    """Validate a job given as a mapping (already read from YAML). An error in a value that
    ``overrides`` gave (see :func:`override_keys`) names the override, not ``source``."""
    if raw is None:
        raise ConfigError(f"{source}: the job file is empty")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a job file must be a mapping of sections")
    spec: JobSpec = _validate(JobSpec, raw, source, overrides=overrides)
    if spec.plugins:
        if base_dir is not None and str(base_dir) not in sys.path:
            sys.path.insert(0, str(base_dir))
        try:
            import_plugins(spec.plugins)
        except PluginError as exc:
            raise ConfigError(f"{source}: plugins: {exc}") from None
    protocol = spec.algorithm.get("protocol", "horizontal")
    try:
        settings_model = PROTOCOLS.get(str(protocol))
    except PluginError as exc:
        raise ConfigError(f"{source}: algorithm.protocol: {exc}") from None
    algorithm = _validate(settings_model, spec.algorithm, source, "algorithm", overrides)
    decl = TopologyDecl(
        template=spec.topology.template,
        roles=tuple(
            RoleDecl(name=n, count=r.count, program=r.program)
            for n, r in spec.topology.roles.items()
        ),
        channels=tuple(
            ChannelDecl(name=c.name, between=c.between, mode=c.mode) for c in spec.topology.channels
        ),
        hub=spec.topology.hub,
    )
    try:
        topology = expand(decl)
        algorithm.check_topology(topology)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    for party in topology.parties:
        _check(
            PROGRAMS,
            f"{algorithm.protocol}/{party.program}",
            f"topology.roles.{party.role}",
            source,
        )
    resolved = spec.model_dump(mode="json", by_alias=True)
    resolved["algorithm"] = algorithm.model_dump(mode="json")
    job = LoadedJob(
        spec=spec,
        algorithm=algorithm,
        topology=topology,
        source=source,
        resolved=resolved,
        job_hash=hash_job(resolved),
        base_dir=(base_dir or Path.cwd()).resolve(),
    )
    _check_plugins(job)
    return job


def load_job(
    path: str | Path, overrides: Iterable[str] = (), *, base_dir: Path | None = None
) -> LoadedJob:
    """Read, override and validate a job file. Relative paths in it (plugins, tables,
    certificates) start from ``base_dir``, by default the file's own folder."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such job file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the job file: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    overrides = list(overrides)
    if isinstance(raw, dict):
        raw = apply_overrides(raw, overrides)
    return parse_job(
        raw,
        source=source,
        base_dir=base_dir or path.resolve().parent,
        overrides=override_keys(overrides),
    )
