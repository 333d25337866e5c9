"""What ``curves.png`` shows: which metrics get a panel (:func:`choose_panels`), what each
panel's title says (:class:`MetricRows`), and how the panels fill the figure's rows
(:func:`row_lengths`). Pure Python over the round records and the resolved job (no
matplotlib), so the choice can be checked on its own.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from consortium.tracking.records import RoundRecord

__all__ = ["Band", "Line", "MetricRows", "Panel", "choose_panels", "is_duration", "row_lengths"]

MAX_COLUMNS = 3
"""The most panels in one row of the figure."""
MAX_PARTY_LINES = 5
"""The most parties drawn one line each."""

# What Model.evaluate and the vertical master's score return: computed on evaluation rows.
_EVALUATION_METRICS = frozenset({"loss", "accuracy", "r2"})


@dataclass(frozen=True, kw_only=True)
class Line:
    """One curve: a value per round."""

    label: str
    rounds: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True, kw_only=True)
class Band:
    """The lowest and highest value of the parties, per round."""

    rounds: tuple[int, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]


@dataclass(frozen=True, kw_only=True)
class Panel:
    """One panel: a global metric's line, the parties' lines, or their median and band."""

    metric: str
    title: str
    per_party: bool
    lines: tuple[Line, ...]
    band: Band | None = None


def is_duration(name: str) -> bool:
    """Whether a metric is a duration in seconds (``train_seconds``, ``duration_s``)."""
    return name == "seconds" or name.endswith(("_seconds", "_s"))


def row_lengths(count: int) -> tuple[int, ...]:
    """How many panels each row of the figure holds: as few rows as :data:`MAX_COLUMNS`
    allows, shared as evenly as they go, fuller rows first. A row's panels share its whole
    width, so no place is left empty (five panels: three, then two wider ones)."""
    if count <= 0:
        return ()
    rows = math.ceil(count / MAX_COLUMNS)
    base, extra = divmod(count, rows)
    return tuple(base + 1 if row < extra else base for row in range(rows))


class MetricRows:
    """The rows a metric was computed on, in words, from the resolved job.

    Horizontal jobs: the aggregator's metrics (``loss``, ``accuracy``, ``r2``) on the
    aggregator's rows (``data.roles.<aggregator>.split``); ``federated_*`` on the
    trainers' held-out rows, combined by ``algorithm.evaluation.aggregation``; per party,
    ``eval_*`` on each trainer's held-out rows and ``train_*`` on its training rows.
    Vertical jobs: ``train_loss`` on the training records, the others on the held-out
    share of the aligned records (``data.test_fraction``). Anything else (a strategy's
    counts, another protocol's metrics, a job that is not known) is not described.
    """

    def __init__(self, job: Mapping[str, Any] | None = None) -> None:
        self._job = job or {}
        self.protocol = _text(_dig(self._job, "algorithm", "protocol"))
        roles = _dig(self._job, "topology", "roles")
        self._roles = {  # role name -> the program it runs
            str(name): _text(_dig(spec, "program")) or str(name)
            for name, spec in (roles.items() if isinstance(roles, Mapping) else ())
        }
        fraction = _dig(self._job, "data", "test_fraction")
        share = isinstance(fraction, int | float) and 0 < fraction < 1
        self._test_percent = round(100 * float(fraction), 1) if share else None
        self._aggregation = _text(_dig(self._job, "algorithm", "evaluation", "aggregation", "name"))

    @property
    def x_label(self) -> str:
        """What a round is: an epoch of the vertical master, a round otherwise."""
        return "epoch" if self.protocol == "vertical" else "round"

    def role_of(self, parties: Sequence[str]) -> str:
        """The role every one of ``parties`` has (``trainer-3`` is a ``trainer``), or
        ``party`` when they differ or the job does not say."""
        found = {self._role_of(p) for p in parties}
        role = found.pop() if len(found) == 1 else None
        return role if role is not None else "party"

    def of_global(self, metric: str) -> str | None:
        if self.protocol == "horizontal":
            if metric.startswith("federated_"):
                trainers = _plural(self._role_running("trainer"))
                how = f", {self._aggregation.replace('_', ' ')}" if self._aggregation else ""
                return f"{trainers}' held-out rows{how}"
            if metric in _EVALUATION_METRICS:
                return self._aggregator_rows()
        if self.protocol == "vertical":
            share = self._test_percent
            if metric == "train_loss":
                return "training rows" + (
                    f": {100 - share:g}% of the aligned records" if share else ""
                )
            if metric in _EVALUATION_METRICS:
                return "test rows" + (f": {share:g}% of the aligned records" if share else "")
        return None

    def of_party(self, metric: str, role: str) -> str | None:
        if self.protocol == "horizontal":
            if metric.startswith("eval_"):
                return f"each {role}'s held-out rows"
            if metric.startswith("train_"):
                return f"each {role}'s training rows"
        return None

    def _aggregator_rows(self) -> str:
        role = self._role_running("aggregator")
        binding = _dig(self._job, "data", "roles", role)
        split = _text(_dig(binding, "split"))
        holdout = _dig(binding, "holdout")
        if split == "train" and isinstance(holdout, int | float) and holdout > 0:
            return f"{role}'s held-out rows"
        word = {"test": "test", "train": "training"}.get(split or "")
        return f"{role}'s {word} rows" if word else f"{role}'s rows"

    def _role_running(self, program: str) -> str:
        """The first role that runs ``program``; the program's name if none does."""
        return next((r for r, p in self._roles.items() if p == program), program)

    def _role_of(self, party: str) -> str | None:
        if party in self._roles:
            return party
        role, _, index = party.rpartition("-")
        return role if index.isdigit() and role in self._roles else None


def choose_panels(
    records: Sequence[RoundRecord], job: Mapping[str, Any] | None = None
) -> list[Panel]:
    """The panels of ``records``, titled with the metric and, where the resolved ``job``
    says it, the rows it was computed on.

    One panel per global metric and one per per-party metric, but none for a duration
    (timing noise) nor for a metric that keeps one value (a number, not a curve). A
    per-party panel has a line per party, in party-name order, for up to
    :data:`MAX_PARTY_LINES` parties, and past that their median within a min-max band.
    Order: the global metrics computed on known rows, then the ``federated_*`` ones (in
    the order of the metrics they federate), the other global metrics, then the per-party
    metrics computed on known rows, then the others; first seen first within each group.
    """
    rows = MetricRows(job)
    global_series: dict[str, dict[int, float]] = {}
    party_series: dict[str, dict[str, dict[int, float]]] = {}
    for record in records:
        for name, value in record.metrics.items():
            global_series.setdefault(name, {})[record.round] = float(value)
        for party, metrics in record.party_metrics.items():
            for name, value in metrics.items():
                party_series.setdefault(name, {}).setdefault(party, {})[record.round] = float(value)
    seen = list(global_series)
    ranked: list[tuple[tuple[int, int], Panel]] = []
    for order, (name, series) in enumerate(global_series.items()):
        if is_duration(name) or _flat([series]):
            continue
        where = rows.of_global(name)
        if where is None:
            rank = (2, order)
        elif name.startswith("federated_"):  # in the order of the aggregator's own
            base = name.removeprefix("federated_")
            rank = (1, seen.index(base) if base in seen else len(seen) + order)
        else:
            rank = (0, order)
        title = name if where is None else f"{name}\n{where}"
        panel = Panel(metric=name, title=title, per_party=False, lines=(_line(name, series),))
        ranked.append((rank, panel))
    for order, (name, by_party) in enumerate(party_series.items()):
        if is_duration(name) or _flat(list(by_party.values())):
            continue
        role = rows.role_of(list(by_party))
        where = rows.of_party(name, role)
        ranked.append(((3 if where else 4, order), _party_panel(name, by_party, role, where)))
    ranked.sort(key=lambda item: item[0])
    return [panel for _, panel in ranked]


def _party_panel(
    name: str, by_party: dict[str, dict[int, float]], role: str, where: str | None
) -> Panel:
    title = f"{name}\n{where}" if where else f"{name}, per {role}"
    parties = sorted(by_party, key=_natural)
    if len(parties) <= MAX_PARTY_LINES:
        lines = tuple(_line(p, by_party[p]) for p in parties)
        return Panel(metric=name, title=title, per_party=True, lines=lines)
    by_round: dict[int, list[float]] = {}
    for series in by_party.values():
        for rnd, value in series.items():
            if math.isfinite(value):
                by_round.setdefault(rnd, []).append(value)
    rounds = tuple(sorted(by_round))
    median = Line(
        label=f"median of {len(parties)} {_plural(role)}",
        rounds=rounds,
        values=tuple(float(statistics.median(by_round[r])) for r in rounds),
    )
    band = Band(
        rounds=rounds,
        low=tuple(min(by_round[r]) for r in rounds),
        high=tuple(max(by_round[r]) for r in rounds),
    )
    return Panel(metric=name, title=title, per_party=True, lines=(median,), band=band)


def _line(label: str, series: dict[int, float]) -> Line:
    rounds = tuple(sorted(series))
    return Line(label=label, rounds=rounds, values=tuple(series[r] for r in rounds))


def _flat(lines: list[dict[int, float]]) -> bool:
    """Whether every line keeps one value, and some line has more than one point."""
    return any(len(s) > 1 for s in lines) and all(len(set(s.values())) <= 1 for s in lines)


def _plural(role: str) -> str:
    """``trainer`` -> ``trainers``; ``party`` -> ``parties``."""
    if role.endswith("y") and not role.endswith(("ay", "ey", "oy", "uy")):
        return f"{role[:-1]}ies"
    return role if role.endswith("s") else f"{role}s"


def _natural(name: str) -> list[Any]:
    """Sort key: ``trainer-2`` before ``trainer-10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _dig(node: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
