"""edgeopt.api as a library user calls it: the argument forms Python invites, bad input as BadInput before any
work, nothing printed."""
import pathlib

import pytest

from conftest import FAST_LOOP
from edgeopt import api
from edgeopt.errors import BadInput


def test_package_takes_a_path_and_check_and_compare_take_one_result(int8_result, tmp_path, capsys):
    manifest = api.package(api.sample_paths()["model"], output=tmp_path / "p.edgepkg")   # a Path, as sample_paths gives
    assert manifest["source"]["reference"] == str(api.sample_paths()["model"])
    path = int8_result["_path"]
    for one in (path, pathlib.Path(path)):   # one result, not a list of characters
        assert api.check(one, {"latency_p90_ms": 1000})["exit_code"] == 0
        assert len(api.compare(one)["rows"]) == 1
    threads = api.compare(path)["rows"][0]["threads"]   # a number in --json, as the result has it ("2" read as text)
    assert threads == int8_result["settings"]["threads"] and isinstance(threads, int)
    with pytest.raises(BadInput, match="budgets must be a table of budgets"):
        api.check(path, "latency_p90_ms=5")
    assert capsys.readouterr() == ("", "")   # a library prints nothing


def test_check_refuses_a_gate_that_checks_nothing(int8_result, tmp_path):
    import json
    doc = {k: v for k, v in int8_result.items() if not k.startswith("_")}
    doc["bundle"] = dict(doc["bundle"], budgets={})
    path = tmp_path / "none.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(BadInput, match="nothing to check"):
        api.check([path])
    assert api.compare([path])["rows"][0]["verdict"] == "no budgets"   # compare shows it, not as passing
    unmeasured = api.compare([path], {"throughput_fps": 1})["rows"][0]["verdict"]   # a latency run measures no FPS
    assert unmeasured == "not measured: throughput_fps", unmeasured   # as check says it, not "miss"


@pytest.mark.parametrize("loop, said", [
    ({"minseconds": 3}, "unrecognized arguments: --minseconds 3"),
    ({"min_second": 3}, "unrecognized arguments: --min-second 3"),   # no abbreviation matches another flag
    ({"min_seconds": "abc"}, "argument --min-seconds: invalid float value: 'abc'"),
    ({"min_seconds": -1}, "argument --min-seconds: must be a finite number, zero or more"),
    ({"warmup_iterations": -5}, "argument --warmup-iterations: must be an integer, zero or more"),
    ({"max_iterations": 0}, "argument --max-iterations: must be a positive integer"),
])
def test_bench_settings_are_judged_before_anything_is_measured(bundles, tmp_path, loop, said):
    with pytest.raises(BadInput, match=f"measurement settings .*: {said}"):
        api.bench(bundles["fp32"], results_dir=tmp_path / "results", loop=loop)
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").glob("*.json"))
    assert api.bench(bundles["fp32"], results_dir=tmp_path / "ok", loop=FAST_LOOP)["status"] == "ok"


def test_the_verbs_are_listed_in_the_module_help():
    text = api.__doc__ + " ".join(api.__all__)
    for verb in ("package", "bench", "fleet_bench", "check", "compare", "report", "history", "optimize", "inspect",
                 "agent_probe", "device_doctor"):
        assert verb in api.__all__ and getattr(api, verb).__doc__, verb
    assert "progress" in text


@pytest.mark.parametrize("timeout", ["60", None])
def test_a_timeout_that_is_no_number_is_bad_input_not_a_format_error(bundles, tmp_path, timeout):
    """check_timeout formatted it with :g, and a caller's "60" ended in ValueError: Unknown format code 'g'."""
    with pytest.raises(BadInput, match=f"--timeout {timeout!r}: expected a number of seconds of at least 10"):
        api.bench(bundles["fp32"], "local", tmp_path / "results", timeout=timeout)
    assert not (tmp_path / "results").exists()


def test_a_path_or_a_wrong_type_as_the_model_and_trials_out_of_range(tmp_path):
    """inspect(Path) answered with a Path (json.dumps refused it); optimize(Path) crashed in the study's JSON and
    left the study behind; trials=0 ran nothing and answered exit 1; inspect(123) and check(None) were TypeErrors
    from deep inside (a library walkthrough)."""
    import json

    model = api.sample_paths()["model"]
    assert json.loads(json.dumps(api.inspect(model)))["model"] == str(model)
    for call, message in ((lambda: api.inspect(123), "model: expected a file path or module:callable, got 123"),
                          (lambda: api.package(None), "model: expected a file path or module:callable, got None"),
                          (lambda: api.check(None), "check needs at least one result file"),
                          (lambda: api.optimize(str(model), trials=0), "trials: expected a whole number of at least 1"),
                          (lambda: api.optimize(str(model), trials=2.5), "trials: expected a whole number")):
        with pytest.raises(BadInput, match=message.replace("(", r"\(").replace(")", r"\)")):
            call()


def test_a_converters_logging_setup_does_not_outlive_the_capture():
    """litert-torch's first logging.info ran logging.basicConfig() while its output was captured: the root logger
    kept a handler on the closed capture stream, and every later log line of the calling program printed a
    traceback (a library walkthrough of a raspberry-pi-5 package)."""
    import logging

    from edgeopt.capture import captured_output
    kept = list(logging.root.handlers)   # a program that configured no logging (pytest's own handlers set aside)
    for handler in kept:
        logging.root.removeHandler(handler)
    try:
        other = logging.getLogger("edgeopt.tests.a_converters_module")
        with captured_output():
            logging.basicConfig()   # as a converter's first log call does, when the root logger has no handler
            (added,) = logging.root.handlers
            other.addHandler(logging.StreamHandler())   # as importing litert-torch gave a torch.fx logger one
        assert logging.root.handlers == [] and added.stream.closed   # the handler would write to a closed file
        assert other.handlers == []
    finally:
        for handler in list(logging.root.handlers):
            logging.root.removeHandler(handler)
        for handler in kept:
            logging.root.addHandler(handler)
