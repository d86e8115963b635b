"""Progress reporting for long work, decoupled from printing: the API takes a Progress, the
CLI passes one that draws on stderr (or a silent one for --quiet and --json)."""
from __future__ import annotations


class Progress:
    """Silent by default. Subclasses draw: start a task, advance it, note a status line, finish."""

    def start(self, label: str, total: int | None = None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def status(self, message: str) -> None:
        pass

    def finish(self) -> None:
        pass

    def log(self, line: str) -> None:
        """A raw line from a subprocess (runtime warnings); shown only when debugging."""


SILENT = Progress()
