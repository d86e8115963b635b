"""Progress on stderr with rich: a bar for counted work, a spinner line for the rest."""
from __future__ import annotations

import os
import threading

from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress as RichBar, ProgressColumn,
                           SpinnerColumn, TextColumn, TimeElapsedColumn, TransferSpeedColumn)
from rich.markup import escape
from rich.text import Text

from ..progress import Progress


class RichProgress(Progress):
    """Counted work nests: a study's trials bar stays while a trial calibrates, trains or uploads, each on a row of
    its own below it (one bar replacing the other lost the trial count at the first calibration, and the next
    trial advanced the calibration's bar)."""

    def __init__(self, console, debug: bool = False):
        self.console, self.debug = console, debug
        # redrawn bars and tables on a terminal; lines elsewhere: in logs and pipes, on a dumb terminal (rich
        # counts one a terminal but draws nothing there: package's calibration and a fleet's devices showed
        # nothing), and with EDGEOPT_PROGRESS=plain (a screen reader read a bar redrawn ten times a second)
        self.drawn = console.is_terminal and not console.is_dumb_terminal and \
            os.environ.get("EDGEOPT_PROGRESS", "").lower() != "plain"
        self.bar = None
        self.tasks = []   # the counted work begun and not finished, innermost last
        self.fleet = None
        self.devices = {}   # a fleet's devices and their states, for the count in a log's lines

    def start(self, label, total=None, unit=""):
        if not self.drawn:  # logs and pipes: one line, no redrawn bar
            size = f"{total / 1e6:.1f} MB" if unit == "bytes" else f"{total} {unit}".strip()
            self.status(f"{label} ({size})" if total else label)
            return
        if self.bar is None:
            self.bar = RichBar(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), _Counted(),
                               TimeElapsedColumn(), console=self.console, transient=True)
            self.bar.start()
        self.tasks.append(self.bar.add_task(label, total=total, transfer=unit == "bytes"))

    def advance(self, n=1):
        if self.tasks:
            self.bar.advance(self.tasks[-1], n)

    def status(self, message):
        if self.tasks:
            self.bar.update(self.tasks[-1], description=message)
        else:
            # a log line: never folded on a pipe (a long trial configuration wrapped without its "·"), and the
            # message is text, not markup ("[...]" in a path or an error would be read as a style)
            self.console.print(Text(f"· {message}", style="dim"), soft_wrap=not self.console.is_terminal)

    def finish(self):
        """The innermost counted work is over; the bar goes with the last of it."""
        if self.tasks:
            self.bar.remove_task(self.tasks.pop())
        if not self.tasks and self.bar is not None:
            self.bar.stop()
            self.bar = None

    def close(self):
        while self.bar is not None:
            self.finish()
        if self.fleet is not None:
            self.fleet.stop()
            self.fleet = None

    def log(self, line):
        if self.debug:
            self.console.print(line, markup=False, style="dim")

    def device_state(self, device, state, detail=""):
        if self.drawn:
            if self.fleet is None:
                self.fleet = _FleetView(self.console)
            self.fleet.update(device, state, detail)
            return
        self.devices[device] = state
        if state in FINAL_STATES:  # logs: one line per device outcome, with how many have reported of how many
            done = sum(s in FINAL_STATES for s in self.devices.values())
            self.console.print(f"{device}: {state}" + (f" — {detail}" if detail else "")
                               + f" [{done}/{len(self.devices)}]", markup=False,
                               soft_wrap=True)   # whole: a CI log's line, a fingerprint grep finds


FINAL_STATES = {"ok": "green", "failed": "red"}


class _Counted(ProgressColumn):
    """n/total for items; bytes and speed for a transfer: one bar holds both (a trial's upload below the trials)."""

    def __init__(self):
        super().__init__()
        self.items, self.size, self.speed = MofNCompleteColumn(), DownloadColumn(), TransferSpeedColumn()

    def render(self, task):
        if task.fields.get("transfer"):
            return Text.assemble(self.size.render(task), " ", self.speed.render(task))
        return self.items.render(task)


class _FleetView:
    """The live per-device table of a fleet run (terminal only)."""

    def __init__(self, console):
        from rich.live import Live
        self.rows, self.lock, self.console = {}, threading.Lock(), console
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
        shown, left = _fitting(rows, self.console.size.height - 4)   # Live renders once before it is assigned
        for device, (state, detail) in shown:
            colour = FINAL_STATES.get(state, "cyan")
            # a device named cam[lab] read as markup: "cam" (an accessibility walkthrough)
            t.add_row(escape(device), f"[{colour}]{escape(state)}[/]", escape(detail[:90]))
        if left:
            t.caption = "not shown: " + ", ".join(f"{n} {state}" for state, n in left.items())
        return t

    def stop(self):
        self.live.stop()


def _fitting(rows: list, lines: int) -> tuple:
    """The rows a terminal of `lines` lines shows, and {state: count} of those left out. In inventory order where all
    fit; else the devices at work first, then the failed, then the rest: with 40 devices in 40 lines the table was
    cut below 29 queued and ok ones, and three measuring devices never appeared (a scale walkthrough)."""
    if len(rows) <= lines:
        return rows, {}
    rank = {"failed": 1, "ok": 2, "queued": 3}
    ordered = sorted(rows, key=lambda row: rank.get(row[1][0], 0))   # stable: inventory order within a state
    shown, cut = ordered[:max(lines - 1, 1)], ordered[max(lines - 1, 1):]
    left = {}
    for _, (state, _) in cut:
        left[state] = left.get(state, 0) + 1
    return shown, left
