"""Progress on stderr with rich: a bar for counted work, a spinner line for the rest."""
from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichBar, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..progress import Progress


class RichProgress(Progress):
    def __init__(self, console, debug: bool = False):
        self.console, self.debug = console, debug
        self.bar = None
        self.task = None

    def start(self, label, total=None):
        self.finish()
        if not self.console.is_terminal:  # logs and pipes: one line, no redrawn bar
            self.status(f"{label} ({total} samples)" if total else label)
            return
        self.bar = RichBar(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TimeElapsedColumn(), console=self.console, transient=True)
        self.bar.start()
        self.task = self.bar.add_task(label, total=total)

    def advance(self, n=1):
        if self.bar is not None:
            self.bar.advance(self.task, n)

    def status(self, message):
        if self.bar is not None:
            self.bar.update(self.task, description=message)
        else:
            self.console.print(f"[dim]· {message}[/]")

    def finish(self):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def log(self, line):
        if self.debug:
            self.console.print(f"[dim]{line}[/]", markup=False)
