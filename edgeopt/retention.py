"""Forgetting old results: `history --forget-older-than`. A 40-device nightly fleet keeps about 2.6 GB in six
months (each run as a file, its history copy and a store row), and nothing removed any of it.

A result is forgotten when it was measured before the cut-off and is not among the newest `keep_last` good results
of its series (one bundle for one profile on one device name and host: what the regression gate reads as a
baseline and as the model's spread between runs, regression.FLOOR_WINDOW). Forgotten are the store's rows and the
files under the results folder's history/ and fleet/ runs. Never touched: each bundle's latest file at the top of
the results folder (what `check results/*.json` reads), a file that cannot be read as a result, a result that
records no time, a fleet run another process holds, and optimize studies (their trials keep their figures)."""
from __future__ import annotations

import dataclasses
import datetime
import fcntl
import os
import pathlib
import re

from . import regression, results
from .errors import BadInput
from .progress import SILENT

AGE = re.compile(r"(\d+)([dw])")   # 180d, 26w


def cutoff(text: str, now: datetime.datetime | None = None) -> datetime.datetime:
    """--forget-older-than's value as an aware instant: an age (180d, 26w) before now, or a date or time (2026-06-01,
    UTC where it names no zone). BadInput naming the value otherwise."""
    text = str(text).strip()
    now = now or datetime.datetime.now(datetime.timezone.utc)
    age = AGE.fullmatch(text)
    if age:
        days = int(age[1]) * (7 if age[2] == "w" else 1)
        if days > 365 * 1000:
            raise BadInput(f"--forget-older-than {text}: more than 1000 years")
        return now - datetime.timedelta(days=days)
    when = results.parse_time(text)
    if when is None:
        raise BadInput(f"--forget-older-than {text!r}: give an age (180d, 26w) or a date (2026-06-01)")
    return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)


@dataclasses.dataclass(frozen=True)
class Policy:
    """What to forget: results measured before `before`, beyond the newest `keep_last` good of their series, of
    `device` and `bundle` only where named."""
    before: datetime.datetime
    keep_last: int
    device: str | None = None
    bundle: str | None = None

    def covers(self, series: tuple) -> bool:
        return (self.bundle is None or series[0] == self.bundle) and (self.device is None or series[2] == self.device)


@dataclasses.dataclass
class Result:
    """One measured result as the store's row and the files that hold it (a history copy, a fleet run's file)."""
    series: tuple            # (bundle, profile, device, host)
    when: datetime.datetime
    good: bool
    row_ids: list = dataclasses.field(default_factory=list)
    paths: list = dataclasses.field(default_factory=list)


def _series(doc: dict) -> tuple:
    bundle, device = doc.get("bundle") or {}, doc.get("device") or {}
    return (bundle.get("name"), results.bundle_profile(doc), device.get("name"), regression.hostname(doc))


def _instant(when: datetime.datetime) -> datetime.datetime:
    return (when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)).astimezone(datetime.timezone.utc)


def result_files(results_dir: pathlib.Path):
    """The files forgetting may remove: every run's copy in history/ and the device files of fleet runs."""
    yield from sorted((results_dir / "history").glob("*.json"))
    for run_file in sorted((results_dir / "fleet").glob("*/*/" + "run.json")):
        yield from sorted(p for p in run_file.parent.glob("*.json") if p.name != "run.json")


class Ledger:
    """Every result the store and the folder hold, one entry per measurement (a row and its files together)."""

    def __init__(self):
        self.results: dict = {}
        self.unreadable: list = []    # files that are no result we can date: left as they are
        self.undated = 0              # results that record no time: left

    def _entry(self, series: tuple, when: datetime.datetime, good: bool) -> Result:
        key = (series, _instant(when))
        if key not in self.results:
            self.results[key] = Result(series, _instant(when), good)
        return self.results[key]

    def add_row(self, row: dict) -> None:
        series = (row["bundle"], row["profile"], row["device"], row["host"])
        entry = self._entry(series, row["created"], row["status"] == "ok")
        entry.row_ids.append(row["id"])

    def add_file(self, path: pathlib.Path) -> None:
        try:
            doc = results.load(path)
        except results.UnreadableResult as e:
            self.unreadable.append(str(e))
            return
        when = results.parse_time(doc.get("created"))
        if when is None:
            self.undated += 1
            return
        self._entry(_series(doc), when, doc.get("status") == "ok").paths.append(path)

    def split(self, policy: Policy) -> tuple:
        """(forgotten, kept by age, kept as the newest good of their series), of the series the policy covers."""
        by_series: dict = {}
        for entry in self.results.values():
            if policy.covers(entry.series):
                by_series.setdefault(entry.series, []).append(entry)
        forgotten, recent, newest_good = [], [], []
        for entries in by_series.values():
            good = sorted((e for e in entries if e.good), key=lambda e: e.when, reverse=True)[:policy.keep_last]
            kept = {id(e) for e in good}
            for entry in entries:
                (recent if entry.when >= policy.before else newest_good if id(entry) in kept else
                 forgotten).append(entry)
        return forgotten, recent, newest_good


def _held_runs(results_dir: pathlib.Path) -> set:
    """Fleet run folders another process holds (a fleet measuring or resuming them): left whole."""
    held = set()
    for lock in (results_dir / "fleet").glob("*/*/.lock"):
        try:
            with open(lock, "rb") as f:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            held.add(lock.parent)
        except OSError:
            continue
    return held


def _remove(entries: list, results_dir: pathlib.Path) -> tuple:
    """Removes the entries' files; a fleet run left with no device file goes with its run file and lock.
    (the entries all of whose files are gone, bytes freed, errors): a row whose file stays is kept with it."""
    gone, freed, errors, runs = [], 0, [], set()
    for entry in entries:
        removed = True
        for path in entry.paths:
            try:
                size = path.stat().st_size
                path.unlink()
                freed += size
            except FileNotFoundError:
                pass
            except OSError as e:
                errors.append(f"cannot remove {path}: {e.strerror or e}")
                removed = False
            if path.parent.parent.parent == results_dir / "fleet":
                runs.add(path.parent)
        if removed:
            gone.append(entry)
    for run in runs:
        if not any(p.name != "run.json" for p in run.glob("*.json")):
            for name in ("run.json", ".lock"):
                (run / name).unlink(missing_ok=True)
            try:
                run.rmdir()
            except OSError:
                pass   # something else lies there: left
    return gone, freed, errors


def forget(store, results_dir, policy: Policy, dry_run: bool = False, progress=SILENT) -> dict:
    """Forgets what the module says. `store`: an open Store, or None where there is none. The store's adding lock is
    held throughout, so that `history --add` does not put back a row of a file being removed."""
    from .store import ADDING_LOCK
    results_dir = pathlib.Path(results_dir)
    ledger, held = Ledger(), _held_runs(results_dir)
    files = list(result_files(results_dir))
    progress.start("reading result files", len(files), "files")
    for path in files:
        if path.parent not in held:
            ledger.add_file(path)
        progress.advance()
    progress.finish()

    def decide_and_remove():
        if store is not None:
            for row in store.dated_rows():
                ledger.add_row(row)
        forgotten, recent, newest_good = ledger.split(policy)
        if dry_run:
            gone, freed, errors = forgotten, sum(_size(p) for e in forgotten for p in e.paths), []
        else:
            gone, freed, errors = _remove(forgotten, results_dir)
        ids = [i for e in gone for i in e.row_ids]
        rows = len(ids) if dry_run or store is None else store.forget(ids)
        return {"before": policy.before.isoformat(), "keep_last": policy.keep_last, "dry_run": dry_run,
                "forgotten": len(gone), "rows": rows, "files": sum(len(e.paths) for e in gone), "bytes": freed,
                "kept_recent": len(recent), "kept_newest_good": len(newest_good),
                "left_unreadable": ledger.unreadable, "left_undated": ledger.undated,
                "left_held_runs": sorted(str(r) for r in held), "errors": errors,
                "store": store.name if store is not None else None}

    if store is None:
        return decide_and_remove()
    if not dry_run:
        store.refuse_unwritable()
    with store.locked(ADDING_LOCK, "cannot lock it for forgetting"):
        return decide_and_remove()


def _size(path: pathlib.Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
