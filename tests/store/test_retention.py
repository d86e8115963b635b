"""history --forget-older-than: old results' rows and files forgotten, the gate's baselines and the latest kept."""
import datetime
import fcntl
import json
import pathlib

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from pgserver import pg, pg_url  # noqa: F401  (fixtures)
from edgeopt import results, retention
from edgeopt.errors import BadInput
from edgeopt.store import Store

NOW = datetime.datetime.now(datetime.timezone.utc)


def _days_ago(days: float) -> str:
    return (NOW - datetime.timedelta(days=days)).isoformat()


def _measured(doc: dict, results_dir, store, days: float, status: str = "ok", host: str | None = None) -> dict:
    """A result as bench keeps it: its history copy, the latest file, and a row naming the copy."""
    doc = {k: v for k, v in doc.items() if not k.startswith("_")}
    doc = dict(doc, created=_days_ago(days), status=status, device=dict(doc["device"]))
    if host:
        doc["device"]["hostname"] = host
    if status != "ok":
        doc["error"] = {"message": "no route to host", "exit_code": 3}
    results.save(doc, results_dir)
    store.add(doc, path=doc["_history"])
    return doc


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'results' / 'edgeopt.db'}"
    return request.getfixturevalue("pg_url").render_as_string(hide_password=False)


def _history_days(url) -> list:
    with Store(url, create=False) as store:
        rows = store.history(limit=1000)
    return sorted(round((NOW - datetime.datetime.fromisoformat(r["created"])).days) for r in rows)


def test_old_results_are_forgotten_and_the_newest_good_ones_kept(cli, int8_result, tmp_path, url):
    """A 40-device nightly fleet kept 2.6 GB in six months and nothing removed any of it (a scale walkthrough)."""
    folder = tmp_path / "results"
    with Store(url) as store:
        for days in (400, 300, 200, 190):
            _measured(int8_result, folder, store, days)
        _measured(int8_result, folder, store, 250, status="failed")
        _measured(int8_result, folder, store, 10)
        other_host = _measured(int8_result, folder, store, 365, host="ci-runner-7")   # its own series
    copies = sorted((folder / "history").glob("*.json"))
    latest = sorted(folder.glob("*.json"))
    assert len(copies) == 7 and len(latest) == 1

    dry = cli("history", "--forget-older-than", "180d", "--keep-last", "2", "--results-dir", folder,
              "--store", url, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    assert len(list((folder / "history").glob("*.json"))) == 7 and len(_history_days(url)) == 7
    said = dry.json()
    # kept: 10 (newer than the cut-off) and 190 (with 10, the newest two good of that series), and the other
    # host's only result; forgotten: 400, 300, 200 and the failed run
    assert (said["forgotten"], said["rows"], said["files"], said["kept"]["recent"], said["kept"]["newest_good"]) == \
        (4, 4, 4, 1, 2)
    assert said["bytes"] > 0 and said["dry_run"]

    done = cli("history", "--forget-older-than", "180d", "--keep-last", "2", "--results-dir", folder,
               "--store", url)
    assert done.exit_code == 0, done.stderr
    assert "forgot 4 result(s) measured before" in done.stdout and "(4 store row(s), 4 file(s)" in done.stdout
    assert _history_days(url) == [10, 190, 365]
    assert len(list((folder / "history").glob("*.json"))) == 3 and sorted(folder.glob("*.json")) == latest
    assert pathlib.Path(other_host["_history"]).is_file()
    again = cli("history", "--forget-older-than", "180d", "--keep-last", "2", "--results-dir", folder,
                "--store", url, "--json")
    assert again.json()["forgotten"] == 0


def test_the_gate_finds_the_same_baseline_after_forgetting(int8_result, tmp_path):
    from edgeopt import api
    folder = tmp_path / "results"
    url = f"sqlite:///{folder / 'edgeopt.db'}"
    with Store(url) as store:
        for days in (90, 60, 45, 40):
            _measured(int8_result, folder, store, days)
        name, device = int8_result["bundle"]["name"], int8_result["device"]["name"]
        host = int8_result["device"].get("hostname")
        before = store.last_good(name, device, NOW.isoformat(), host)["created"]
    report = api.forget_results("30d", 1, folder)
    assert report["forgotten"] == 3
    with Store(url) as store:
        assert store.last_good(name, device, NOW.isoformat(), host)["created"] == before


def test_files_without_a_store_and_fleet_runs_are_forgotten_and_a_held_run_is_left(int8_result, tmp_path):
    """No store (removed, or never made: results copied from CI): the files alone. A fleet run folder whose device
    files are all forgotten goes whole; one another process holds (a fleet measuring it) is left."""
    from edgeopt import api
    folder = tmp_path / "results"
    doc = {k: v for k, v in int8_result.items() if not k.startswith("_")}
    for n, days in enumerate((100, 50, 5)):
        results.write_json_new(folder / "history" / f"h{n}.json", dict(doc, created=_days_ago(days)))
    runs = folder / "fleet" / "int8"
    for run, days in (("old", 100), ("held", 100)):
        (runs / run).mkdir(parents=True)
        (runs / run / "run.json").write_text(json.dumps({"bundle": "int8"}))
        (runs / run / ".lock").write_text("")
        device = dict(doc, created=_days_ago(days), device=dict(doc["device"], name=f"pi-{run}"), status="failed",
                      error={"message": "no route to host", "exit_code": 3})
        (runs / run / f"pi-{run}.json").write_text(json.dumps(device))
    (folder / "history" / "cut.json").write_text('{"schema": "edgeopt.result/1", "sta')
    with open(runs / "held" / ".lock", "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        report = api.forget_results("30d", 1, folder)
    assert report["store"] is None and report["rows"] == 0 and report["notes"][0].startswith("no results store at ")
    assert report["forgotten"] == 3 and report["files"] == 3    # h0, h1 (h2 is the newest good) and the failed run
    assert not (runs / "old").exists() and (runs / "held" / "pi-held.json").is_file()
    assert report["left_held_runs"] == [str(runs / "held")] and len(report["left_unreadable"]) == 1
    assert sorted(p.name for p in (folder / "history").glob("*.json")) == ["cut.json", "h2.json"]


def test_narrowed_to_a_device_it_leaves_the_others(int8_result, tmp_path):
    from edgeopt import api
    folder = tmp_path / "results"
    with Store(f"sqlite:///{folder / 'edgeopt.db'}") as store:
        for days in (100, 90, 80):
            _measured(int8_result, folder, store, days)
    report = api.forget_results("30d", 1, folder, device="pi-nowhere")
    assert report["forgotten"] == 0 and not any(report["kept"].values())
    assert api.forget_results("30d", 1, folder, device=int8_result["device"]["name"])["forgotten"] == 2


def test_bad_values_are_one_line_exit_2(cli, tmp_path):
    for args, said in ((["--forget-older-than", "soon"], "give an age (180d, 26w) or a date"),
                       (["--forget-older-than", "30d", "--keep-last", "0"], "--keep-last"),
                       (["--dry-run"], "--keep-last and --dry-run go with --forget-older-than"),
                       (["--forget-older-than", "30d", "--add", "x.json"], "give them in two commands")):
        r = cli("history", *args, "--results-dir", tmp_path / "results")
        assert r.exit_code == 2 and said in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) <= 3, r.stderr
    assert not (tmp_path / "results").exists()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_age_text_is_an_instant_or_bad_input(text):
    try:
        when = retention.cutoff(text)
    except BadInput as e:
        assert "--forget-older-than" in str(e)
    else:
        assert when.tzinfo is not None


def test_history_since_lists_the_recent_ones(cli, int8_result, tmp_path, url):
    folder = tmp_path / "results"
    with Store(url) as store:
        for days in (40, 20, 3, 1):
            _measured(int8_result, folder, store, days)
    r = cli("history", "--since", "1w", "--store", url, "--json")
    assert r.exit_code == 0, r.stderr
    assert [round((NOW - datetime.datetime.fromisoformat(row["created"])).days) for row in r.json()] == [1, 3]
    r = cli("history", "--since", (NOW - datetime.timedelta(days=25)).date().isoformat(), "--limit", "2",
            "--store", url)
    assert "the newest 2 of 3 results shown" in r.stdout, r.stdout


def _fleet_run(folder, name: str, docs: dict) -> pathlib.Path:
    """A fleet run folder as fleet bench leaves it: run.json, .lock and a file per device."""
    run = folder / "fleet" / "int8" / name
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"bundle": "int8", "devices": sorted(docs)}))
    (run / ".lock").write_text("")
    for device, doc in docs.items():
        (run / f"{device}.json").write_text(json.dumps(doc))
    return run


def test_a_fleet_run_is_kept_or_forgotten_whole_and_by_its_hardware(int8_result, tmp_path):
    """Forgetting one device's file of a run made a run that passed read as failed to `check RUN_DIR`; a series
    without the hardware let other VM types' results fill the newest slots and the gate lost its baseline (a
    retention walkthrough)."""
    from edgeopt import api
    folder = tmp_path / "results"
    doc = {k: v for k, v in int8_result.items() if not k.startswith("_")}

    def on(device, days, **hardware):
        return dict(doc, created=_days_ago(days), device=dict(doc["device"], name=device, **hardware))
    # pi-b retired after its last run: the newest good of its series, so the whole run stays
    mixed = _fleet_run(folder, "mixed", {"pi-a": on("pi-a", 100), "pi-b": on("pi-b", 100)})
    old = _fleet_run(folder, "old", {"pi-a": on("pi-a", 200)})
    for days in (50, 40):
        results.write_json_new(folder / "history" / f"a{days}.json", on("pi-a", days))
    # two newer results of another VM type under the same host name: no slot of the first's
    for days in (150, 140):
        results.write_json_new(folder / "history" / f"other{days}.json", on("pi-b", days, cpu_model="Other CPU"))
    report = api.forget_results("30d", 1, folder)
    assert not old.exists() and (mixed / "pi-a.json").is_file() and (mixed / "pi-b.json").is_file()
    assert report["kept"]["run"] == 1 and report["kept"]["newest_good"] == 3, report   # pi-a 40, pi-b, other 140
    assert sorted(p.name for p in (folder / "history").glob("*.json")) == ["a40.json", "other140.json"]


def test_results_an_optimize_study_names_are_kept(int8_result, tmp_path):
    """`report --study` reads the chosen trial's results: forgetting them made it exit 1 (a retention walkthrough).
    The trials' `results` attribute is Optuna's own table in the store's database."""
    import sqlalchemy as sa
    from edgeopt import api
    folder = tmp_path / "results"
    url = f"sqlite:///{folder / 'edgeopt.db'}"
    with Store(url) as store:
        named = [_measured(int8_result, folder, store, days) for days in (90, 80, 70)]
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE trial_user_attributes (trial_user_attribute_id INTEGER PRIMARY KEY, "
                             "trial_id INTEGER, key TEXT, value_json TEXT)")
        conn.exec_driver_sql("INSERT INTO trial_user_attributes (trial_id, key, value_json) VALUES (1, 'results', ?)",
                             (json.dumps([named[0]["_history"]]),))
    engine.dispose()
    report = api.forget_results("30d", 1, folder)
    assert report["forgotten"] == 1 and report["kept"]["study"] == 1
    assert pathlib.Path(named[0]["_history"]).is_file() and not pathlib.Path(named[1]["_history"]).exists()


def test_a_store_named_and_missing_is_refused_and_a_dry_run_speaks_under_quiet(cli, int8_result, tmp_path):
    """A mistyped --store forgot every file while the real store kept their rows (a retention walkthrough)."""
    folder = tmp_path / "results"
    with Store(f"sqlite:///{folder / 'edgeopt.db'}") as store:
        for days in (90, 80):
            _measured(int8_result, folder, store, days)
    r = cli("history", "--forget-older-than", "30d", "--results-dir", folder, "--store",
            f"sqlite:///{tmp_path / 'reslts' / 'edgeopt.db'}")
    assert r.exit_code == 2 and "no results store at" in r.stderr, r.stderr
    assert len(list((folder / "history").glob("*.json"))) == 2
    r = cli("history", "--forget-older-than", "30d", "--keep-last", "1", "--results-dir", folder, "--dry-run", "-q")
    assert r.exit_code == 0 and "would forget 1 result(s) measured before" in r.stderr, r.stderr
    for args in (["--keep-last", "3"], ["--forget-older-than", "30d", "--limit", "3"]):
        r = cli("history", *args, "--results-dir", folder)
        assert r.exit_code == 2, args


def test_an_undated_result_is_left_row_and_file_and_a_host_of_nothing_is_one_series(int8_result, tmp_path):
    """A result that records no time is stored at the time it was added: its row was forgotten and its file kept,
    which --add put back as the newest. A host of "" put a row and its file in two series (a review)."""
    from edgeopt import api
    folder = tmp_path / "results"
    doc = {k: v for k, v in int8_result.items() if not k.startswith("_")}
    undated = {k: v for k, v in doc.items() if k != "created"}
    with Store(f"sqlite:///{folder / 'edgeopt.db'}") as store:
        results.save(undated, folder)
        store.add(undated, path=undated["_history"])
        for days in (90, 80, 70):
            nameless = dict(doc, created=_days_ago(days), device=dict(doc["device"], hostname=""))
            results.save(nameless, folder)
            store.add(nameless, path=nameless["_history"])
    report = api.forget_results("2100-01-01", 1, folder)
    assert (report["forgotten"], report["rows"], report["files"], report["left_undated"]) == (2, 2, 2, 1), report
    with Store(f"sqlite:///{folder / 'edgeopt.db'}") as store:
        assert len(store.history(limit=10)) == 2


def test_a_study_run_in_another_folder_keeps_its_relative_paths(int8_result, tmp_path, monkeypatch):
    """A study records its results' paths as its worker gave them (results/history/x.json): a forget run from
    another folder matched none of them (a review)."""
    import sqlalchemy as sa
    from edgeopt import api
    study_dir = tmp_path / "study"
    folder = study_dir / "results"
    url = f"sqlite:///{folder / 'edgeopt.db'}"
    with Store(url) as store:
        named = [_measured(int8_result, folder, store, days) for days in (90, 80)]
    relative = str(pathlib.Path(named[0]["_history"]).relative_to(study_dir))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE trial_user_attributes (trial_user_attribute_id INTEGER PRIMARY KEY, "
                             "trial_id INTEGER, key TEXT, value_json TEXT)")
        conn.exec_driver_sql("INSERT INTO trial_user_attributes (trial_id, key, value_json) VALUES (1, 'results', ?)",
                             (json.dumps([relative]),))
    engine.dispose()
    monkeypatch.chdir(tmp_path)
    report = api.forget_results("30d", 1, "study/results")
    assert report["kept"]["study"] == 1 and pathlib.Path(named[0]["_history"]).is_file(), report


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"\d{1,7}[dw]|\d{4}-\d\d-\d\d(T\d\d:\d\d(:\d\d)?([+-]\d\d:\d\d|Z)?)?", fullmatch=True))
def test_an_age_or_a_date_is_an_instant_in_utc_or_one_line(text):
    try:
        when = retention.cutoff(text)
    except BadInput as e:
        assert str(e).startswith(f"--forget-older-than {text}") or str(e).startswith(f"--forget-older-than {text!r}")
    else:
        assert when.utcoffset() == datetime.timedelta(0)
