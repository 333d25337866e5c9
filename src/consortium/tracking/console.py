"""Progress on the terminal: a bar over rounds, warnings as they happen, a final table.

Events named ``dropout``, ``warning``, ``party_failed``, ``retry`` or ``timeout``, and any
event with the field ``level="warning"``, print as warnings; other events print dimmed.
With ``quiet=True`` only warnings and a failed run's error are printed.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from consortium.tracking.records import EventValue, Model, RoundRecord, RunInfo, RunSummary

__all__ = ["ConsoleSink"]

_WARNING_EVENTS = frozenset({"dropout", "party_failed", "retry", "timeout", "warning"})
_SHOWN_METRICS = 3  # of the latest round's, beside the progress bar


class ConsoleSink:
    """Shows a run's progress on a rich console (standard error unless one is given)."""

    def __init__(self, *, console: Console | None = None, quiet: bool = False) -> None:
        self.console = console if console is not None else Console(stderr=True)
        self.quiet = quiet
        self._info: RunInfo | None = None
        self._progress: Progress | None = None  # with one task: the rounds

    def start(self, info: RunInfo) -> None:
        self._info = info
        if self.quiet:
            return
        self.console.print(
            f"[bold]{escape(info.job_name)}[/] run [cyan]{escape(info.run_id)}[/] "
            f"-> {escape(str(info.run_dir))}",
            highlight=False,
        )
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            # Only a terminal needs the refresh thread; elsewhere the bar renders on stop.
            auto_refresh=self.console.is_terminal,
            redirect_stdout=False,
        )
        self._progress.add_task(
            "resuming" if info.resumed_after else "starting",
            total=info.rounds if info.rounds > 0 else None,
            completed=info.resumed_after,
        )
        self._progress.start()

    def round(self, record: RoundRecord) -> None:
        if self._progress is None:
            return
        shown = list(record.metrics.items())[:_SHOWN_METRICS]
        parts = [f"round {record.round}"]
        parts += [f"{escape(name)}={value:.6g}" for name, value in shown]
        if record.failures:
            parts.append(f"[yellow]{len(record.failures)} failed[/]")
        (task,) = self._progress.task_ids
        self._progress.update(task, advance=1, description="  ".join(parts), refresh=True)

    def event(self, name: str, **fields: EventValue) -> None:
        is_warning = name in _WARNING_EVENTS or fields.get("level") == "warning"
        if self.quiet and not is_warning:
            return
        details = " ".join(f"{key}={value}" for key, value in fields.items() if key != "level")
        text = f"{name} {details}".strip()
        markup = f"[yellow]warning[/] {escape(text)}" if is_warning else f"[dim]{escape(text)}[/]"
        self.console.print(markup, highlight=False)

    def finish(self, summary: RunSummary, model: Model | None) -> None:
        self.close()
        if summary.status == "failed":
            self.console.print(
                f"[bold red]run failed[/] {escape(summary.error or '')}".rstrip(), highlight=False
            )
        if not self.quiet:
            self.console.print(self._table(summary))

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _table(self, summary: RunSummary) -> Table:
        info = self._info
        title = f"{info.job_name} {info.run_id}" if info is not None else "run"
        table = Table(title=escape(title), header_style="bold")
        table.add_column("metric")
        table.add_column("value", overflow="fold")
        for name, value in summary.metrics.items():
            table.add_row(escape(name), f"{value:.6g}")
        table.add_section()
        style = "green" if summary.status == "completed" else "bold red"
        table.add_row("status", f"[{style}]{summary.status}[/]")
        planned = f"/{info.rounds}" if info is not None and info.rounds else ""
        table.add_row("rounds", f"{summary.rounds_completed}{planned}")
        table.add_row("duration", f"{summary.duration_s:.1f} s")
        if summary.dropouts:
            dropouts = ", ".join(f"{party} ({why})" for party, why in summary.dropouts.items())
            table.add_row("dropouts", escape(dropouts))
        if summary.error:
            table.add_row("error", escape(summary.error))
        if info is not None:
            table.add_row("run dir", escape(str(info.run_dir)))
        return table
