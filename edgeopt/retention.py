"""Forgetting old results: `history --forget-older-than`. A 40-device nightly fleet keeps about 2.6 GB in six
months (each run as a file, its history copy and a store row), and nothing removed any of it.

A result is forgotten when it was measured before the cut-off and nothing keeps it. Kept are: the newest
`keep_last` good results of its series (one bundle for one profile on one device name, host and hardware: what the
regression gate reads as a baseline and as the spread between runs, regression.FLOOR_WINDOW, beside the candidate
itself), a result an optimize study names (`report --study` reads the chosen trial's), and every result of a fleet
run that keeps one of its results or that another process holds (a run is kept or forgotten whole: a run missing a
device's file reads as failed to `check RUN_DIR`, and a resumed run lost its placeholders). Forgotten are the
store's rows and the files under the results folder's history/ and fleet/ runs. Never touched: each bundle's latest
file at the top of the results folder (what `check results/*.json` reads), and a file that cannot be read as a
result."""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import pathlib
import re

from . import regression, results
from .errors import BadInput, EdgeoptError
from .progress import SILENT

AGE = re.compile(r"(\d+)([dw])")   # 180d, 26w
# the newest good results of a series kept whatever their age: the regression gate's spread between runs reads the
# FLOOR_WINDOW runs up to its baseline, and the newest result is the candidate itself (20 kept left it 19)
KEEP_LAST = regression.FLOOR_WINDOW + 1
BATCH = 200   # results whose files, then rows, go together: a Ctrl-C leaves at most these rows of removed files
REASONS = ("recent", "newest_good", "study", "run", "held")   # why a result is kept, as the report counts them


def cutoff(text: str, option: str = "--forget-older-than",
           now: datetime.datetime | None = None) -> datetime.datetime:
    """An age (180d, 26w) before now, or a date or time (2026-06-01, UTC where it names no zone), as an aware
    instant in UTC: --forget-older-than's and history --since's. BadInput naming `option` and the value otherwise."""
    text = str(text).strip()
    now = now or datetime.datetime.now(datetime.timezone.utc)
    age = AGE.fullmatch(text)
    if age:
        days = int(age[1]) * (7 if age[2] == "w" else 1)
        if days > 365 * 1000:
            raise BadInput(f"{option} {text}: more than 1000 years")
        return now - datetime.timedelta(days=days)
    if not results.is_time(text):   # year 1 with an offset does not convert to UTC: a traceback in the store
        raise BadInput(f"{option} {text!r}: give an age (180d, 26w) or a date (2026-06-01) of the years "
                       f"{results.TIME_YEARS[0]} to {results.TIME_YEARS[1]}")
    return _utc(results.parse_time(text))


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
    """One measured result: the store's rows and the files that hold it (a history copy, a fleet run's file)."""
    series: tuple            # (bundle, profile, device, host, hardware...)
    when: datetime.datetime
    good: bool
    row_ids: list = dataclasses.field(default_factory=list)
    paths: list = dataclasses.field(default_factory=list)   # its files under the results folder
    named: set = dataclasses.field(default_factory=set)     # every path a holder names it by (a row's too)
    run: pathlib.Path | None = None                         # the fleet run folder it belongs to


def _utc(when: datetime.datetime) -> datetime.datetime:
    return (when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)).astimezone(datetime.timezone.utc)


def series_key(bundle, profile, device, host, hardware: dict) -> tuple:
    """A result's series, the same from its row and from its file: the gate's baseline must match bundle, profile,
    device, host and hardware. Text only, as regression.hostname and results.bundle_profile read them (a host of ""
    put a row and its file in two series: a review); a missing device name is "?", as the store keeps it."""
    def text(value):
        return value if isinstance(value, str) and value else None
    return (text(bundle), text(profile), text(device) or "?", text(host)) + tuple(
        hardware.get(key) for key, _ in regression.HARDWARE)


def _series(doc: dict) -> tuple:
    bundle = doc.get("bundle") if isinstance(doc.get("bundle"), dict) else {}
    device = doc.get("device") if isinstance(doc.get("device"), dict) else {}
    return series_key(bundle.get("name"), results.bundle_profile(doc), device.get("name"),
                      regression.hostname(doc), regression.hardware(doc))


def result_files(results_dir: pathlib.Path):
    """The files forgetting may remove: every run's copy in history/ and the device files of fleet runs."""
    yield from sorted((results_dir / "history").glob("*.json"))
    for run in fleet_runs(results_dir):
        yield from sorted(p for p in run.glob("*.json") if p.name != "run.json")


def fleet_runs(results_dir: pathlib.Path) -> list:
    return sorted(run_file.parent for run_file in (results_dir / "fleet").glob("*/*/run.json"))


class Ledger:
    """Every result the store and the folder hold, one entry per measurement (a row and its files together)."""

    def __init__(self, results_dir: pathlib.Path):
        self.fleet = results_dir / "fleet"
        self.results: dict = {}
        self.unreadable: list = []    # files that are no result we can date: left as they are
        self.undated_files = self.undated_rows = 0   # results that record no time: left

    def _entry(self, series: tuple, when: datetime.datetime, good: bool) -> Result:
        key = (series, _utc(when))
        if key not in self.results:
            self.results[key] = Result(series, _utc(when), good)
        return self.results[key]

    def add_row(self, row: dict) -> None:
        if results.parse_time(row.get("said")) is None:   # dated when added: forgotten, its file stayed and an
            self.undated_rows += 1                        # --add put it back as the newest (a review)
            return
        series = series_key(row["bundle"], row["profile"], row["device"], row["host"], row.get("hardware") or {})
        entry = self._entry(series, row["created"], row["status"] == "ok")
        entry.row_ids.append(row["id"])
        if row.get("path"):
            entry.named.add(os.path.abspath(row["path"]))

    def add_file(self, path: pathlib.Path) -> None:
        try:
            doc = results.load(path)
        except EdgeoptError as e:   # a cut file, another kind of JSON, a dangling link: left, and said
            if path.exists() or path.is_symlink():
                self.unreadable.append(str(e))
            return
        when = results.parse_time(doc.get("created"))
        if when is None:
            self.undated_files += 1
            return
        entry = self._entry(_series(doc), when, doc.get("status") == "ok")
        entry.paths.append(path)
        entry.named.add(os.path.abspath(path))
        if path.parent.parent.parent == self.fleet:
            entry.run = path.parent

    @property
    def undated(self) -> int:
        """At least this many results record no time (a row and its file are one, but cannot be told as one)."""
        return max(self.undated_files, self.undated_rows)

    def decide(self, policy: Policy, studied: tuple, held: set) -> tuple:
        """(the results to forget, {reason: how many kept}), of the series the policy covers. studied: what
        studied_paths gives. A fleet run is kept whole where any of its results is kept (those the policy does
        not cover too)."""
        newest: set = set()
        by_series = collections.defaultdict(list)
        for entry in self.results.values():
            by_series[entry.series].append(entry)
        for entries in by_series.values():
            good = sorted((e for e in entries if e.good), key=lambda e: e.when, reverse=True)
            newest.update(id(e) for e in good[:policy.keep_last])
        why = {}
        for entry in self.results.values():
            why[id(entry)] = ("outside" if not policy.covers(entry.series) else "recent"
                              if entry.when >= policy.before else "newest_good" if id(entry) in newest else "held"
                              if entry.run in held else "study" if _named(entry.named, studied) else None)
        kept_runs = {e.run for e in self.results.values() if e.run is not None and why[id(e)]}
        forgotten, kept = [], collections.Counter()
        for entry in self.results.values():
            reason = why[id(entry)] or ("run" if entry.run in kept_runs else None)
            if reason is None:
                forgotten.append(entry)
            elif reason != "outside":
                kept[reason] += 1
        return forgotten, kept


@contextlib.contextmanager
def _run_taken(run: pathlib.Path):
    """Whether this process now holds the fleet run's lock (non-blocking, as a fleet takes it): a `fleet bench
    --resume` that took the run after the ledger was read had its files removed under it (a walkthrough). Opened
    for reading (flock takes it so): nothing is made, even on a read-only disk; a run without one is no fleet's."""
    try:
        f = open(run / ".lock")
    except FileNotFoundError:
        yield True
        return
    except OSError:
        yield False
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def _held_runs(results_dir: pathlib.Path) -> set:
    """Fleet run folders another process holds (a fleet measuring or resuming them): kept whole."""
    held = set()
    for run in fleet_runs(results_dir):
        with _run_taken(run) as taken:
            if not taken:
                held.add(run)
    return held


def _remove_files(entries: list) -> tuple:
    """Removes the entries' files. (the entries all of whose files are gone, bytes freed, errors): a row whose file
    stays is kept with it."""
    gone, freed, errors = [], 0, []
    for entry in entries:
        removed = True
        for path in entry.paths:
            try:
                size = path.lstat().st_size
                path.unlink()
                freed += size
            except FileNotFoundError:
                pass
            except OSError as e:
                errors.append(f"cannot remove {path}: {e.strerror or e}")
                removed = False
        if removed:
            gone.append(entry)
    return gone, freed, errors


def _remove_empty_run(run: pathlib.Path) -> None:
    """A fleet run left with no device file goes with its run file and lock (also one an interrupted forget left).
    Moved aside first, under its lock: a `fleet bench --resume` that listed it would open `.lock` by name, make a
    new one and hold a run being removed (a review); now it finds no run there."""
    if any(p.name != "run.json" for p in run.glob("*.json")):
        return
    aside = run.with_name(f".{run.name}.forgotten")
    try:
        os.rename(run, aside)
    except OSError:
        return
    for name in ("run.json", ".lock"):
        with contextlib.suppress(FileNotFoundError):
            (aside / name).unlink()
    with contextlib.suppress(OSError):
        aside.rmdir()   # something else lies there: left, aside


class Forgetting:
    """One forget: the entries removed batch by batch (files, then their rows), fleet runs under their lock."""

    def __init__(self, store, results_dir: pathlib.Path, progress):
        self.store, self.results_dir, self.progress = store, results_dir, progress
        self.gone, self.freed, self.errors, self.rows, self.busy = [], 0, [], 0, set()

    def run(self, forgotten: list) -> None:
        by_run = collections.defaultdict(list)
        for entry in forgotten:
            by_run[entry.run].append(entry)
        self.progress.start("forgetting results", len(forgotten), "results")
        try:
            for run, entries in by_run.items():
                if run is None:
                    self._batches(entries)
                    continue
                with _run_taken(run) as taken:
                    if not taken:   # a fleet took it meanwhile: kept whole
                        self.busy.add(run)
                        continue
                    self._batches(entries)
                    _remove_empty_run(run)
        finally:
            self.progress.finish()

    def _batches(self, entries: list) -> None:
        for start in range(0, len(entries), BATCH):
            gone, freed, errors = _remove_files(entries[start:start + BATCH])
            ids = [i for e in gone for i in e.row_ids]
            if self.store is not None and ids:
                try:
                    self.rows += self.store.forget(ids)
                except EdgeoptError as e:   # its files are gone: said, and the same command forgets the rows
                    raise type(e)(f"{e}; the files of {len(self.gone) + len(gone)} result(s) were removed and "
                                  f"{len(ids)} of their rows remain: the same command forgets them") from None
            self.gone += gone
            self.freed += freed
            self.errors += errors
            self.progress.advance(len(entries[start:start + BATCH]))


def _named(paths: set, studied: tuple) -> bool:
    """Whether a study names one of these absolute paths: by the path, or a relative one by what it ends with."""
    absolute, tails = studied
    for path in paths:
        parts = path.split(os.sep)
        if path in absolute or tails.intersection(os.sep + os.sep.join(parts[i:]) for i in range(1, len(parts))):
            return True
    return False


def studied_paths(store) -> tuple:
    """The result files an optimize study in the store's database names (its trials' `results` attribute, Optuna's
    own table), as (absolute paths, the tails of relative ones: store.tail_of): `report --study` reads the chosen
    trial's, and forgetting them made it exit 1 (a walkthrough). A study records the paths its worker gave, relative
    to the folder it ran in, which need not be this one (a review)."""
    import sqlalchemy as sa
    from .store import tail_of
    if store is None or not sa.inspect(store.engine).has_table("trial_user_attributes"):
        return set(), set()
    attrs = sa.table("trial_user_attributes", sa.column("key"), sa.column("value_json"))
    named = set()
    with store.engine.connect() as conn:
        for (value,) in conn.execute(sa.select(attrs.c.value_json).where(attrs.c.key == "results")):
            try:
                paths = json.loads(value)
            except (TypeError, ValueError):
                continue
            if isinstance(paths, list):
                named.update(p for p in paths if isinstance(p, str) and p)
    return {p for p in named if os.path.isabs(p)}, {tail_of(p) for p in named if not os.path.isabs(p)}


def forget(store, results_dir, policy: Policy, dry_run: bool = False, progress=SILENT) -> dict:
    """Forgets what the module says. `store`: an open Store, or None where there is none. The store's adding lock is
    held throughout, so that `history --add` does not put back a row of a file being removed."""
    from .store import ADDING_LOCK
    results_dir = pathlib.Path(results_dir)
    if store is None or dry_run:   # a dry run changes nothing: it needs no lock (a read-only copy's store)
        return _forget(store, results_dir, policy, dry_run, progress)
    store.refuse_undeletable()
    with store.locked(ADDING_LOCK, "cannot lock it for forgetting"):
        return _forget(store, results_dir, policy, dry_run, progress)


def _forget(store, results_dir: pathlib.Path, policy: Policy, dry_run: bool, progress) -> dict:
    ledger, held = Ledger(results_dir), _held_runs(results_dir)
    files = list(result_files(results_dir))
    progress.start("reading result files", len(files), "files")
    for path in files:
        ledger.add_file(path)
        progress.advance()
    progress.finish()
    if store is not None:
        for row in store.dated_rows():
            ledger.add_row(row)
    forgotten, kept = ledger.decide(policy, studied_paths(store), held)
    done = Forgetting(store, results_dir, progress)
    if dry_run:
        done.gone, done.rows = forgotten, sum(len(e.row_ids) for e in forgotten)
        done.freed = sum(p.lstat().st_size for e in forgotten for p in e.paths if os.path.lexists(p))
    else:
        try:
            done.run(forgotten)
        except KeyboardInterrupt:   # "interrupted" alone said nothing of what was gone
            raise KeyboardInterrupt(f"{len(done.gone)} of {len(forgotten)} result(s) forgotten; the same command "
                                    "forgets the rest") from None
        for run in fleet_runs(results_dir):   # those an interrupted forget emptied
            with _run_taken(run) as taken:
                if taken:
                    _remove_empty_run(run)
    kept["held"] += sum(1 for e in forgotten if e.run in done.busy)   # a fleet took their run meanwhile
    return {"before": policy.before.isoformat(), "keep_last": policy.keep_last, "dry_run": dry_run,
            "forgotten": len(done.gone), "rows": done.rows, "files": sum(len(e.paths) for e in done.gone),
            "bytes": done.freed, "kept": {reason: kept[reason] for reason in REASONS},
            "not_removed": len(forgotten) - len(done.gone), "left_unreadable": ledger.unreadable,
            "left_undated": ledger.undated, "left_held_runs": sorted(str(r) for r in held | done.busy),
            "errors": done.errors, "store": store.name if store is not None else None}
