"""Progress on stderr with rich: a bar for counted work, a spinner line for the rest."""
from __future__ import annotations

import threading

from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress as RichBar, SpinnerColumn, TextColumn,
                           TimeElapsedColumn, TransferSpeedColumn)
from rich.text import Text

from ..progress import Progress


class RichProgress(Progress):
    def __init__(self, console, debug: bool = False):
        self.console, self.debug = console, debug
        self.bar = None
        self.task = None
        self.fleet = None

    def start(self, label, total=None, unit=""):
        self.finish()
        if not self.console.is_terminal:  # logs and pipes: one line, no redrawn bar
            size = f"{total / 1e6:.1f} MB" if unit == "bytes" else f"{total} {unit}".strip()
            self.status(f"{label} ({size})" if total else label)
            return
        counted = [DownloadColumn(), TransferSpeedColumn()] if unit == "bytes" else [MofNCompleteColumn()]
        self.bar = RichBar(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), *counted,
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
            # a log line: never folded on a pipe (a long trial configuration wrapped without its "·"), and the
            # message is text, not markup ("[...]" in a path or an error would be read as a style)
            self.console.print(Text(f"· {message}", style="dim"), soft_wrap=not self.console.is_terminal)

    def finish(self):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def close(self):
        self.finish()
        if self.fleet is not None:
            self.fleet.stop()
            self.fleet = None

    def log(self, line):
        if self.debug:
            self.console.print(line, markup=False, style="dim")

    def device_state(self, device, state, detail=""):
        if self.console.is_terminal:
            if self.fleet is None:
                self.fleet = _FleetView(self.console)
            self.fleet.update(device, state, detail)
        elif state in FINAL_STATES:  # logs: one line per device outcome
            self.console.print(f"{device}: {state}" + (f" — {detail}" if detail else ""), markup=False)


FINAL_STATES = {"ok": "green", "failed": "red"}


class _FleetView:
    """The live per-device table of a fleet run (terminal only)."""

    def __init__(self, console):
        from rich.live import Live
        self.rows, self.lock = {}, threading.Lock()
        self.live = Live(console=console, transient=False, refresh_per_second=4, get_renderable=self.render)
        self.live.start()

    def update(self, device, state, detail):
        with self.lock:
            self.rows[device] = (state, detail)

    def render(self):
        from rich.table import Table
        t = Table(title="fleet", box=None, show_header=True)
        for col in ("device", "state", "detail"):
            t.add_column(col)
        with self.lock:
            rows = list(self.rows.items())
        done = sum(1 for _, (state, _) in rows if state in FINAL_STATES)
        t.title = f"fleet: {done}/{len(rows)} done"
        for device, (state, detail) in rows:
            colour = FINAL_STATES.get(state, "cyan")
            t.add_row(device, f"[{colour}]{state}[/]", detail[:90])
        return t

    def stop(self):
        self.live.stop()
