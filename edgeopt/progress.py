"""Progress reporting for long work, decoupled from printing: the API takes a Progress, the
CLI passes one that draws on stderr (or a silent one for --quiet and --json)."""
from __future__ import annotations


class Progress:
    """Silent by default. Subclasses draw: start a task, advance it, note a status line, finish."""

    def start(self, label: str, total: int | None = None, unit: str = "") -> None:
        """Counted work begins: `total` items of `unit` ("bytes" draws as a transfer)."""
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def status(self, message: str) -> None:
        pass

    def finish(self) -> None:
        pass

    def close(self) -> None:
        """The command is over: stop anything drawing."""
        self.finish()

    def log(self, line: str) -> None:
        """A raw line from a subprocess (runtime warnings); shown only when debugging."""

    def device_state(self, device: str, state: str, detail: str = "") -> None:
        """A fleet device moved to `state` (queued, connecting, uploading, measuring, ok, failed)."""


class DeviceProgress(Progress):
    """What one device's transport reports, folded into the fleet view's row for that device."""

    def __init__(self, parent: Progress, device: str):
        self.parent, self.device = parent, device
        self.label, self.total, self.done = "", None, 0

    def start(self, label, total=None, unit=""):
        self.label, self.total, self.done = label, total, 0
        self.parent.device_state(self.device, label)

    def advance(self, n=1):
        self.done += n
        if self.total:
            self.parent.device_state(self.device, self.label, f"{100 * self.done // self.total}%")

    def status(self, message):
        phase, _, detail = message.partition(": ")
        self.parent.device_state(self.device, phase, detail)


SILENT = Progress()
