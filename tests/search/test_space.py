"""The search space of `optimize` (edgeopt/search/space.py) and the grid over it, without packaging anything."""
from __future__ import annotations

import json
import pathlib
import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from edgeopt.errors import BadInput

STEPPED = """quantize = ["none", "int8"]
precision = ["fp32"]
keep_float = [""]
lowrank = false
qat = false
"prune.channels" = {low = 0.1, high = 0.7, step = 0.2}
"prune.criterion" = ["l2"]
"prune.scope" = ["layer"]
"prune.round_to" = [1]
"distill.epochs" = {low = 2, high = 8, step = 2}
"distill.lr" = 0.001
threads = [1, 2]
"""


def _dims(tmp_path, text):
    from edgeopt.convert import backend_for
    from edgeopt.profiles import load_profile
    from edgeopt.search import space

    f = tmp_path / "space.toml"
    f.write_text(text)
    return space.build(backend_for(load_profile("generic")), "pytorch-module", True, True, None, f)


def _proposals(dims, sampler: str, count: int, seed: int = 0) -> list:
    """The configurations a sampler proposes in `count` trials (each told the same value), after the two
    trials every study enqueues (the baseline, INT8 alone), as rdb.open_study and Runner._run_trial do."""
    import optuna

    from edgeopt.search import samplers, space

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    study = optuna.create_study(sampler=samplers.make(sampler, dims, seed, False))
    every = samplers.models_every_dimension(study.sampler)
    study.enqueue_trial(space.untouched(dims, "fp32") if every else {}, user_attrs={"baseline": True})
    study.enqueue_trial(space.params(dims, space.textbook(dims, "fp32"), every))
    out = []
    for _ in range(count + 2):
        trial = study.ask()
        config = space.sample(dims, trial, every)
        if not trial.user_attrs.get("baseline"):
            out.append(config)
        study.tell(trial, 1.0)
    return out


def test_a_stepped_range_is_tried_in_its_steps_by_every_sampler(tmp_path):
    dims = {d.name: d for d in _dims(tmp_path, STEPPED)}
    channels, epochs = dims["prune.channels"], dims["distill.epochs"]
    assert channels.grid() == [0.1, 0.3, 0.5, 0.7] and epochs.grid() == [2, 4, 6, 8]
    assert channels.describe() == "0.1..0.7 step 0.2"
    for sampler in ("tpe", "random", "gp", "grid"):
        seen = {(c.get("prune.channels"), c.get("distill.epochs")) for c in _proposals(list(dims.values()), sampler, 16)}
        assert {ch for ch, _ in seen} - {None} <= set(channels.grid()), (sampler, seen)   # 0.3, not 0.30000000000000004
        assert {e for _, e in seen} - {None} <= set(epochs.grid()), (sampler, seen)


CONTINUOUS = """quantize = ["none", "int8"]
precision = ["fp32"]
keep_float = [""]
qat = false
"prune.criterion" = ["l2"]
"prune.scope" = ["layer"]
"prune.round_to" = [1]
"distill.lr" = 0.001
"""


@pytest.mark.parametrize("text", [STEPPED, CONTINUOUS])
@pytest.mark.parametrize("every", [False, True])
def test_the_parameters_of_a_configuration_make_a_trial_sample_that_configuration(tmp_path, text, every):
    """space.params is what the grid and enqueue_trial give a trial (INT8 alone, an explored point): with a
    transform's on/off carried by its strength axis, a configuration's own keys would leave the axis unset, and
    the sampler would prune the enqueued "INT8 alone"."""
    import optuna

    from edgeopt.search import space

    dims = _dims(tmp_path, text)
    points = space.grid_points(dims) if text == STEPPED else [space.sample(dims, _random_trial(dims, s)) for s in
                                                               range(60)]
    points.append(space.textbook(dims, "fp32"))
    assert any(p.get("prune") for p in points) and any(not p.get("prune") for p in points)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for point in points:
        study.enqueue_trial(space.params(dims, point, every))
        trial = study.ask()
        assert space.options(dims, space.sample(dims, trial, every)) == space.options(dims, point)
        study.tell(trial, 1.0)


def test_a_transform_and_its_strength_are_one_ordered_axis_for_the_samplers(tmp_path):
    """Pruning's on/off is channels one step below the range (off is weaker than the weakest setting);
    low-rank's energy one step above it (keeping all the energy changes nothing). A transform the space file
    fixes on or off, or whose strength it fixes, keeps its yes/no dimension."""
    import optuna

    from edgeopt.search import space

    dims = _dims(tmp_path, STEPPED.replace("lowrank = false\n", ""))
    axes = {d.name: space.strength_axis(dims, d) for d in dims if d.toggle}
    assert (axes["prune"].name, axes["prune"].low, axes["prune"].high, axes["prune"].step) == (
        "prune.channels", -0.1, 0.7, 0.2)
    assert (axes["distill"].low, axes["distill"].high, axes["distill"].integer) == (0, 8, True)
    energy = next(d for d in dims if d.name == "lowrank.energy")
    assert axes["lowrank"].low == energy.low and axes["lowrank"].high == pytest.approx(energy.high + 0.49 / 3)
    assert axes["qat"] is None   # fixed off in the file
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    configs = []
    for _ in range(200):
        trial = study.ask()
        configs.append(space.sample(dims, trial))
        assert not {"prune", "distill", "lowrank"} & set(trial.params), trial.params
        assert (trial.params["prune.channels"] >= 0.1) == configs[-1]["prune"]
        assert (trial.params["lowrank.energy"] <= energy.high) == configs[-1]["lowrank"]
        study.tell(trial, 1.0)
    off = sum(not c["prune"] for c in configs) / len(configs)
    assert 0.1 < off < 0.3   # one step of five: what grid search gives "off"
    fixed = _dims(tmp_path, STEPPED.replace("lowrank = false", "lowrank = true"))
    assert space.strength_axis(fixed, next(d for d in fixed if d.name == "lowrank")) is None
    one = _dims(tmp_path, STEPPED.replace('{low = 0.1, high = 0.7, step = 0.2}', "0.3"))
    assert space.strength_axis(one, next(d for d in one if d.name == "prune")) is None
    trial = _random_trial(one, 0)
    assert isinstance(space.sample(one, trial)["prune"], bool) and "prune" in trial.params


@pytest.mark.parametrize("line, fragment", [
    ('"prune.channels" = {low = 0.1, high = 0.7, step = 0.25}', "whole number of steps"),
    ('"prune.channels" = {low = 0.1, high = 0.7, step = 0}', "step must be above 0"),
    ('"prune.channels" = {low = 0.1}', "a table of low, high and \\(optionally\\) step"),
    ('"prune.channels" = {low = 0.1, high = 0.7, step = 0.2, by = 1}', "a table of low, high and \\(optionally\\) step"),
    # without a step it is the range [low, high]: it was refused, and hid the low above its high
    ('"prune.channels" = {low = 0.6, high = 0.3}', "low 0.6 is above high 0.3$"),
    ('"prune.round_to" = {low = 1, high = 16, step = 5}', "prune.round_to: a choice among 1, 8, 16, or any whole "
                                                          "number in 1..256, not a range: give a list of values"),
    ('"prune.channels" = {low = 0.1, high = "x", step = 0.2}', "must be numbers"),
    ('"distill.epochs" = {low = 2, high = 8, step = 1.5}', "whole numbers"),
    ('"distill.lr" = {low = 0.0001, high = 0.0091, step = 0.001}', "log scale"),
    ('"prune.channels" = {low = 0.1, high = 0.99, step = 0.01}', "option's bounds"),
    ('"prune.channels" = [0.6, 0.3]', "prune.channels: low 0.6 is above high 0.3$"),
    ('"prune.channels" = {low = 0.7, high = 0.1, step = 0.2}', "low 0.7 is above high 0.1$"),
    # an open lower bound and a log scale's 0 failed a trial mid-study, one as "another search space" (a walkthrough)
    ('"prune.channels" = {low = 0.0, high = 0.5, step = 0.25}', r"bounds \(above 0, up to 0.95\)$"),
    ('"distill.lr" = [0.0, 0.01]', r"\[0.0, 0.01\] is not within the option's bounds \(above 0, up to 0.01\)$"),
    # a step that makes millions of values was a MemoryError listing them for the grid
    ('"prune.channels" = {low = 0.1, high = 0.7, step = 0.000000001}', "makes 600,000,001 values of 0.1..0.7; at "
                                                                      "most 10,001 are searched"),
])
def test_bad_steps_are_refused_naming_the_file_and_dimension(tmp_path, line, fragment):
    with pytest.raises(BadInput, match=fragment) as e:
        _dims(tmp_path, line + "\n")
    assert "space.toml: " + line.split(" =")[0].strip('"') in str(e.value)


def test_a_choice_the_option_takes_beyond_those_searched_is_searched(tmp_path):
    """prune.round_to is searched among 1, 8, 16 and takes any whole number in 1..256: `[3]` was refused as "not
    one of 1, 8, 16"; a number out of its bounds, or not whole, still is."""
    dims = {d.name: d for d in _dims(tmp_path, 'prune = [true]\n"prune.round_to" = [4, 32.0, 8]\n')}
    assert dims["prune.round_to"].choices == (4, 32, 8)
    assert all(type(v) is int for v in dims["prune.round_to"].choices)   # 32.0 as the option takes it
    for bad in ("0", "257", "2.5", "true", '"8"'):
        with pytest.raises(BadInput, match=f"prune.round_to: {re.escape(bad)} is not one of 1, 8, 16, or any whole "
                                           r"number in 1..256$"):
            _dims(tmp_path, f'prune = [true]\n"prune.round_to" = [{bad}]\n')


def test_a_range_table_without_a_step_is_the_range(tmp_path):
    channels = {d.name: d for d in _dims(tmp_path, 'prune = [true]\n"prune.channels" = {low = 0.3, high = 0.6}\n')}
    assert (channels["prune.channels"].low, channels["prune.channels"].high, channels["prune.channels"].step) == \
        (0.3, 0.6, None)


def test_the_grid_tries_every_distinct_configuration_once(tmp_path):
    """An option of a transform that is off is no grid dimension of its own: Optuna's product grid tried each
    unpruned configuration once per pruning ratio, and once per value of the options of transforms the file turns
    off (the 100 configurations here were 16,384 points), and the loop stopped on ten cached answers in a row
    before the grid was through."""
    from edgeopt.search import space

    dims = _dims(tmp_path, STEPPED)
    points = space.grid_points(dims)
    keys = [repr(space.options(dims, p)) for p in points]
    assert len(points) == len(set(keys)) == 2 * 2 * (1 + 4) * (1 + 4)   # quantize, threads, prune, distill
    proposed = [repr(space.options(dims, c)) for c in _proposals(dims, "grid", len(points))][1:]
    assert sorted(proposed) == sorted(keys)   # INT8 alone is enqueued, no grid point: the grid proposes it again
    other = [repr(space.options(dims, c)) for c in _proposals(dims, "grid", 8, seed=1)]
    assert other != proposed[:8]        # the seed orders the grid


def test_int8_only_options_are_grid_points_only_with_int8(tmp_path):
    from edgeopt.convert import backend_for
    from edgeopt.profiles import load_profile
    from edgeopt.search import space

    f = tmp_path / "space.toml"
    f.write_text('quantize = ["none", "int8"]\nprecision = ["fp32"]\nint8_ops = ["auto", "compute"]\n')
    dims = space.build(backend_for(load_profile("raspberry-pi-5")), "onnx", True, False, None, f)
    assert sorted(map(repr, space.grid_points(dims))) == sorted(map(repr, [
        {"quantize": "none", "precision": "fp32"}] + [
        {"quantize": "int8", "keep_float": k, "int8_ops": o}   # LiteRT's precision: unquantized only
        for k in next(d.grid() for d in dims if d.name == "keep_float") for o in ("auto", "compute")]))


def test_onnx_runtime_precision_is_searched_for_unquantized_models_only(tmp_path):
    """ONNX Runtime packages INT8 at fp16 as INT8 at fp32 (and says so): the measured landscape's 150
    configurations held 50 such twins, each packaged for nothing."""
    from edgeopt.search import space

    dims = _dims(tmp_path, 'quantize = ["none", "dynamic", "int8"]\nkeep_float = [""]\nprune = false\n'
                           'lowrank = false\ndistill = false\nqat = false\n')
    packages = sorted(repr(space.options(dims, p)[0]) for p in space.grid_points(dims))
    assert packages == sorted(map(repr, [{"quantize": "none", "precision": "fp32"},
                                         {"quantize": "none", "precision": "fp16"},
                                         {"quantize": "dynamic"}, {"quantize": "int8"}]))
    assert "precision" not in space.options(dims, space.textbook(dims, "fp32"))[0]   # INT8 alone: package's default


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 30) | st.floats(-2, 30, allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["low", "high", "step", "x"]), inner,
                                                                max_size=4),
    max_leaves=8)
_KEYS = st.sampled_from(["quantize", "precision", "keep_float", "prune", "prune.channels", "distill.epochs",
                         "distill.lr", "threads", "lowrank.energy", "nonsense", "prune.scope"])


def _toml(value) -> str:
    """A TOML value (the generated documents hold no None below the top level's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value if v is not None) + "]"
    return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items() if v is not None) + "}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(_KEYS, _VALUES, max_size=4))
def test_any_space_file_is_read_or_refused_in_one_line(tmp_path, doc):
    """The reader is total: a generated TOML document either narrows the space or is BadInput naming the file."""
    try:
        dims = _dims(tmp_path, "".join(f"{json.dumps(k)} = {_toml(v)}\n" for k, v in doc.items() if v is not None))
    except BadInput as e:
        assert "space.toml" in str(e) and "\n" not in str(e)
        return
    from edgeopt.search import space
    for d in dims:   # every dimension a sampler can use: a grid of at least one value within its bounds
        assert d.grid()
        if not d.choices and d.limits:
            assert d.limits[0] <= d.low <= d.high <= d.limits[1]
    try:
        assert space.grid_points(dims)
    except BadInput as e:   # a space left wide: the grid refuses it in one line
        assert "more than 100,000 configurations" in str(e)


def test_a_search_that_proposes_only_measured_configurations_is_given_an_unmeasured_one(tmp_path):
    """_Runner._explore enqueues the next configuration no trial has measured, and nothing once all are."""
    import optuna

    from edgeopt.search import samplers, space, study as studies, trial
    from edgeopt.search.runner import Runner

    dims = _dims(tmp_path, 'quantize = ["none", "int8"]\nprecision = ["fp32", "fp16"]\nkeep_float = [""]\n'
                           'prune = false\nlowrank = false\ndistill = false\nqat = false\n')
    runner = object.__new__(Runner)
    runner.dims, runner.identity, runner.exploration = dims, {"model": "m"}, None
    runner.job = studies.Job("m", "generic", [], {}, seed=3)
    runner.study = optuna.create_study(sampler=samplers.make("tpe", dims, 0, False))
    measured = []
    for _ in range(len(space.grid_points(dims)) + 1):
        runner._explore()
        waiting = runner.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
        if not waiting:
            break
        t = runner.study.ask()
        config = space.sample(dims, t)
        key = trial.Candidate(*space.options(dims, config)).key(runner.identity)
        assert key not in measured and t.user_attrs["explore"]
        t.set_user_attr("key", key)
        runner.study.tell(t, 1.0)
        measured.append(key)
    # none at fp32 and fp16, and INT8 (ONNX Runtime ignores --precision once quantized: the search does not offer it)
    assert len(measured) == 3 and not runner.study.get_trials(states=(optuna.trial.TrialState.WAITING,))


def test_a_grid_of_the_default_space_is_refused_and_exploring_it_draws_points(tmp_path):
    """The default space of a PyTorch source with training data has millions of configurations: the grid says so
    in one line (exit 2) instead of listing them; exploring draws points without listing the grid."""
    import time

    from edgeopt.convert import backend_for
    from edgeopt.profiles import load_profile
    from edgeopt.search import space

    dims = space.build(backend_for(load_profile("generic")), "pytorch-module", True, True, 4)
    start = time.perf_counter()
    with pytest.raises(BadInput, match="more than 100,000 configurations"):
        space.grid_points(dims)
    exploration = space.Exploration(dims, 0)
    points = [next(exploration.candidates(i)) for i in range(200)]
    assert time.perf_counter() - start < 30
    assert len({repr(space.options(dims, p)) for p in points}) > 150   # mostly distinct: a large space
    for p in points:   # a transform's options only while it is on
        assert all(p.get(k.split(".")[0]) for k in p if "." in k)


def _intel(tmp_path, text=None):
    """The dimensions of an ONNX model on intel-cpu, whose hardware runs OpenVINO and ONNX Runtime."""
    from edgeopt.convert import backend_for
    from edgeopt.profiles import load_profile
    from edgeopt.search import space

    prof = load_profile("intel-cpu")
    f = None
    if text is not None:
        f = tmp_path / "space.toml"
        f.write_text(text)
    return space.build([backend_for(prof, name) for name in prof.backends], "onnx", True, False, None, f)


def test_several_backends_each_offer_their_own_quantizations_and_options(tmp_path):
    from edgeopt.search import space

    dims = _intel(tmp_path)
    by = {d.name: d for d in dims}
    assert by["backend"].choices == ("openvino", "onnxruntime") and "quantize" not in by
    assert "dynamic" in by["onnxruntime.quantize"].choices and "dynamic" not in by["openvino.quantize"].choices
    assert "bf16" in by["openvino.precision"].choices and "bf16" not in by["onnxruntime.precision"].choices
    for point in space.grid_points(dims) + [space.sample(dims, _random_trial(dims, seed)) for seed in range(30)]:
        chosen = point["backend"]
        assert all(k == "backend" or k.startswith(chosen + ".") for k in point), point
        package, _, _ = space.options(dims, point)
        assert package["backend"] == chosen and package["quantize"] == point[f"{chosen}.quantize"]
        assert not any("." in k for k in package), package
    textbook = space.textbook(dims, "fp32")   # INT8 alone on the profile's own backend
    package = space.options(dims, textbook)[0]
    assert {k: package[k] for k in ("backend", "quantize", "precision")} == {
        "backend": "openvino", "quantize": "int8", "precision": "fp32"} and not package.get("keep_float")
    assert len({json.dumps(p, sort_keys=True) for p in space.grid_points(dims)}) == len(space.grid_points(dims))


def _random_trial(dims, seed):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()


def test_a_space_file_narrows_every_backend_by_a_plain_key_and_one_by_its_name(tmp_path):
    by = {d.name: d for d in _intel(tmp_path, 'quantize = ["none", "dynamic"]\n"openvino.precision" = ["fp32"]\n')}
    assert by["onnxruntime.quantize"].choices == ("none", "dynamic") and by["openvino.quantize"].choices == ("none",)
    assert by["openvino.precision"].choices == ("fp32",) and by["onnxruntime.precision"].choices == ("fp32", "fp16")
    one = [d.name for d in _intel(tmp_path, 'backend = ["onnxruntime"]\nquantize = ["int8"]\n')]
    assert "backend" not in one and "quantize" in one and "keep_float" in one   # one backend: the plain names
    for text, fragment in (('backend = ["tensorrt"]\n', 'backend: "tensorrt" is not one this search can use'),
                           ('quantize = ["int4-weights"]\n', "(backend onnxruntime; `backend = [...]` leaves it"),
                           ('"tflite.quantize" = ["int8"]\n', "tflite.quantize: not a dimension of this search")):
        with pytest.raises(BadInput, match=r"space\.toml: ") as e:
            _intel(tmp_path, text)
        assert fragment in str(e.value), str(e.value)


def test_without_an_accuracy_budget_only_the_transforms_a_space_file_names_are_searched(tmp_path):
    """Pruning a random-weight MobileNetV3 by 67 % "met every budget" in a study that measured speed alone."""
    from edgeopt.convert import backend_for
    from edgeopt.profiles import load_profile
    from edgeopt.search import space
    backend = backend_for(load_profile("generic"))
    dims = space.build(backend, "pytorch-module", True, True, None, measures_accuracy=False)
    names = {d.name for d in dims}
    assert names and not names & {"prune", "prune.channels", "lowrank", "distill", "distill.epochs"}
    assert space.transforms_left_out(dims, backend, "pytorch-module", True) == ["distill", "lowrank", "prune", "qat"]
    f = tmp_path / "space.toml"
    f.write_text('"prune.channels" = [0.2, 0.4]\n')   # an option names its transform
    dims = space.build(backend, "pytorch-module", True, True, None, f, measures_accuracy=False)
    names = {d.name for d in dims}
    assert {"prune", "prune.channels"} <= names and not names & {"lowrank", "distill"}
    assert space.transforms_left_out(dims, backend, "pytorch-module", True) == ["distill", "lowrank", "qat"]
    assert space.transforms_left_out([], backend, "onnx", True) == []   # no transforms to leave out


def _folders(tmp_path) -> dict:
    """A study's output and results folders under the test's own (left out, `_prepare` makes ./optimize and
    ./results in the working directory: the repository's)."""
    return {"results_dir": str(tmp_path / "results"), "output_dir": tmp_path / "opt"}


def test_a_study_without_an_accuracy_budget_says_which_transforms_it_left_out(tmp_path):
    from edgeopt.search import study
    source = str(pathlib.Path(__file__).parents[1] / "compress" / "pruning_nets.py") + ":resnetish"
    job = study.Job(source, "generic", ["local"], {}, **_folders(tmp_path), input_shapes={"input": [1, 3, 32, 32]})
    dims, _ = study._prepare(job, None)
    assert not {d.name for d in dims} & {"prune", "lowrank"}
    assert job.notes == ["lowrank, prune not searched: no accuracy budget would see what they cost (give labelled "
                         "--eval-data and --max-accuracy-drop, or name them in --space to search them anyway)"]


def test_a_study_leaves_out_a_transform_that_cannot_change_the_model_and_says_why(tmp_path):
    """Every pruning trial of a Pi study on a ShuffleNet failed alike: Torch-Pruning cannot trace its channel
    shuffle. The study now learns it once, before the first trial."""
    from edgeopt.search import study
    net = tmp_path / "net.py"
    net.write_text(f"import sys\nsys.path.insert(0, {str(pathlib.Path(__file__).parents[1])!r})\n"
                   "from zoo.models import shufflenet_v2\n\n"
                   "def build():\n    return shufflenet_v2(num_classes=10, input_shape=(1, 3, 32, 32))\n")
    f = tmp_path / "space.toml"
    f.write_text('"prune.channels" = [0.2, 0.4]\nlowrank = true\n')
    job = study.Job(f"{net}:build", "generic", ["local"], {}, **_folders(tmp_path), input_shapes={"x": [1, 3, 32, 32]})
    dims, _ = study._prepare(job, f)
    names = {d.name for d in dims}
    assert not names & {"prune", "prune.channels", "prune.criterion"} and "lowrank" in names
    assert any(n.startswith("prune not searched: Torch-Pruning cannot trace which channels this model's layers "
                            "share (ZeroDivisionError") for n in job.notes), job.notes


def _refusal(prof, dims, point, samples: int = 300) -> str | None:
    """What package would refuse in this configuration before any work, as pipeline.package checks it."""
    from edgeopt import pipeline
    from edgeopt.compress import base as transforms
    from edgeopt.convert import backend_for
    from edgeopt.convert.base import PackageRequest
    from edgeopt.search import space

    package, steps, _ = space.options(dims, point)
    backend = backend_for(prof, package.pop("backend", None))
    quantize, precision = package.pop("quantize", "none"), package.pop("precision", None) or prof.default_precision
    try:
        options = backend.options(package)
        backend.check_profile(options, prof)
        calibration = {"x": np.zeros((samples, 3, 8, 8), "float32")}
        backend._validate(PackageRequest(precision, quantize, calibration, "", None, options, False, prof))
        for name, values in steps:
            transform = transforms.get(name)
            transforms.build_options(transform.Options, values, name)
            if transform.makes_qdq_graph:
                pipeline._check_qdq_graph(name, quantize, backend)
    except BadInput as e:
        return f"{space.options(dims, point)}: {e}"
    return None


@pytest.mark.parametrize("profile, space_text, qat", [
    ("generic", None, True),
    ("intel-cpu", None, True),
    ("raspberry-pi-5", None, True),                          # LiteRT and ONNX Runtime: with ONNX Runtime only
    ("raspberry-pi-5", 'backend = ["tflite"]\n', False)])   # LiteRT converts the module: QAT's QDQ graph stays float
def test_every_configuration_a_search_proposes_is_one_package_takes(tmp_path, profile, space_text, qat):
    """A Pi study of a ShuffleNet lost 4 trials of 10 to configurations package refuses before any work: QAT
    with dynamic quantization, LiteRT's fp16 with int8 or dynamic."""
    from edgeopt.convert import backend_for
    from edgeopt.profiles import load_profile
    from edgeopt.search import space

    prof = load_profile(profile)
    f = None
    if space_text:
        f = tmp_path / "space.toml"
        f.write_text(space_text)
    dims = space.build([backend_for(prof, name) for name in prof.backends], "pytorch-module", True, True, 4, f)
    assert ("qat" in {d.name for d in dims}) == qat
    points = [space.sample(dims, _random_trial(dims, seed)) for seed in range(150)]
    exploration = space.Exploration(dims, 0)
    points += [p for p in (next(exploration.candidates(i), None) for i in range(150)) if p]
    refused = [r for r in (_refusal(prof, dims, p) for p in points) if r]
    assert not refused, refused[:3]
    with_qat = [p for p in points if any(name == "qat" for name, _ in space.options(dims, p)[1])]
    assert bool(with_qat) == qat


@pytest.mark.parametrize("profile, fp16_with_qat", [("generic", False), ("intel-cpu", True)])
def test_qat_at_fp16_only_where_the_precision_acts_on_its_qdq_graph(profile, fp16_with_qat):
    """ONNX Runtime records fp32 for a QDQ graph whatever --precision says, so QAT at fp16 there packaged the
    fp32 bundle again, after a QAT training run. OpenVINO's fp16 hint still acts on what stays float."""
    from edgeopt.convert import backend_for
    from edgeopt.profiles import load_profile
    from edgeopt.search import space

    prof = load_profile(profile)
    backends = [backend_for(prof, name) for name in prof.backends]
    dims = space.build(backends, "pytorch-module", True, True, 4)
    points = [space.sample(dims, _random_trial(dims, seed)) for seed in range(400)]
    with_qat = [space.options(dims, p)[0] for p in points if any(n == "qat" for n, _ in space.options(dims, p)[1])]
    assert with_qat
    fp16 = [o for o in with_qat if o.get("precision") == "fp16"]
    assert all(o.get("backend", "onnxruntime") != "onnxruntime" for o in fp16)
    assert bool(fp16) == fp16_with_qat
    assert any(o.get("precision", "fp32") == "fp32" for o in with_qat)


def test_a_small_calibration_set_is_used_whole_by_a_search_not_refused_per_trial(tmp_path):
    """An intel-cpu study with 64 --calib samples failed INT8 by hand, and every OpenVINO INT8 candidate after it:
    NNCF's INT8 asks for 100 unless told to use fewer."""
    import numpy as np

    from edgeopt.search import space, study
    rng = np.random.default_rng(0)
    for name, count in (("calib.npz", 64), ("big.npz", 120)):
        np.savez(tmp_path / name, input=rng.standard_normal((count, 3, 32, 32)).astype("float32"))
    source = str(pathlib.Path(__file__).parents[1] / "compress" / "pruning_nets.py") + ":resnetish"
    job = study.Job(source, "intel-cpu", ["local"], {}, **_folders(tmp_path), input_shapes={"input": [1, 3, 32, 32]},
                    calib=str(tmp_path / "calib.npz"))
    dims, _ = study._prepare(job, None)
    prof = __import__("edgeopt.profiles", fromlist=["load_profile"]).load_profile("intel-cpu")
    textbook = space.textbook(dims, "fp32")
    assert space.options(dims, textbook)[0]["subset_size"] == 64 and _refusal(prof, dims, textbook) is None
    assert any(n.startswith("openvino INT8 calibrates on all 64 --calib samples (subset_size=64") for n in job.notes)
    points = [space.sample(dims, _random_trial(dims, seed)) for seed in range(60)]
    assert not [r for r in (_refusal(prof, dims, p, samples=64) for p in points) if r]
    job = study.Job(source, "intel-cpu", ["local"], {}, **_folders(tmp_path), input_shapes={"input": [1, 3, 32, 32]},
                    calib=str(tmp_path / "big.npz"))
    dims, _ = study._prepare(job, None)
    assert "subset_size" not in space.options(dims, space.textbook(dims, "fp32"))[0]
    assert not any("calibrates on all" in n for n in job.notes)


def test_int8_named_without_calibration_data_says_what_it_needs(tmp_path):
    """A space file's `quantize = ["int8"]` without --calib read "'int8' is not one of none, dynamic"."""
    from edgeopt.convert import backend_for
    from edgeopt.errors import BadInput
    from edgeopt.profiles import load_profile
    from edgeopt.search import space

    f = tmp_path / "space.toml"
    f.write_text('quantize = ["none", "int8"]\n')
    with pytest.raises(BadInput, match=r'quantize: "int8" is not one of none, dynamic \(int8 needs --calib\)$'):
        space.build(backend_for(load_profile("generic")), "onnx", False, False, None, f)


@pytest.mark.parametrize("unquoted, quoted", [
    ("prune.channels = {low = 0.1, high = 0.7, step = 0.2}", '"prune.channels" = {low = 0.1, high = 0.7, step = 0.2}'),
    ("distill.epochs = [2, 4]", '"distill.epochs" = [2, 4]'),
    ("prune = {channels = [0.3, 0.5]}", '"prune.channels" = [0.3, 0.5]'),
])
def test_an_unquoted_dotted_name_narrows_the_dimension_it_names(tmp_path, unquoted, quoted):
    """TOML reads `prune.channels = ...` unquoted as a table prune holding channels: it was refused with the table
    as a Python dict ("{'channels': {...}} is not one of False, True")."""
    assert _dims(tmp_path, unquoted + "\n") == _dims(tmp_path, quoted + "\n")


@pytest.mark.parametrize("line, message", [
    ("prune.chanels = [0.3, 0.5]", "space.toml: prune.chanels: not a dimension of this search"),
    ("threads = [1, 'two']", 'space.toml: threads: expected a list of thread counts >= 1, got [1, "two"]'),
    ("threads = 1979-05-27", "space.toml: threads: expected a list of thread counts >= 1, got 1979-05-27"),
    ("quantize = [true]", "space.toml: quantize: true is not one of none, dynamic"),
    ('"prune.channels" = {low = "a", high = 1, step = 1}',
     'space.toml: prune.channels: low, high and step must be numbers, got {low = "a", high = 1, step = 1}'),
    ("quantize = {}", "space.toml: quantize: an empty table"),
    # a range of a dimension this search has not (distill.epochs without --train-data): named as written, not as
    # "distill.epochs.low"
    ('"distil.epochs" = {low = 2, high = 8, step = 2}', "space.toml: distil.epochs: not a dimension of this search"),
    ('prune = "yes"', 'space.toml: prune: "yes" is not one of false, true'),   # TOML's spelling, not Python's
    # true == 1 in Python: `threads = true` passed as one thread and failed mid-study, `prune = [0, 1]` was off
    # and on (a user walkthrough)
    ("threads = true", "space.toml: threads: expected a list of thread counts >= 1, got true"),
    ("threads = [1, true]", "space.toml: threads: expected a list of thread counts >= 1, got [1, true]"),
    ("prune = [0, 1]", "space.toml: prune: 0 is not one of false, true"),
    ("keep_float = [true]", 'space.toml: keep_float: true is not one of "" (none), auto'),   # not ", auto"
    # a user review: the option of a searched transform read "transforms need a PyTorch source" for a module
    ('"prune.foo" = [1]', "space.toml: prune.foo: not a dimension of this search (backend onnxruntime; prune has "
                          "no option foo: its options here are channels, criterion, scope, round_to)"),
    ("quantize = []", "space.toml: quantize: an empty list leaves nothing to search: give at least one of none, "
                      "dynamic, int8"),
    ('"prune.channels" = [0.3, 0.6, 0.9]', "space.toml: prune.channels: a number option is a range: expected "
                                           "[low, high]"),
])
def test_a_table_that_names_no_dimension_is_refused_in_words(tmp_path, line, message):
    with pytest.raises(BadInput) as e:
        _dims(tmp_path, line + "\n")
    assert f"/{message}" in str(e.value) and "{'" not in str(e.value), str(e.value)   # no Python dict


def test_a_named_sampler_searches_a_pareto_front_as_itself():
    """`--pareto --sampler gp` (or tpe) ran NSGA-II whatever was named; only an unnamed sampler picks by the
    number of objectives. Optuna's TPE and GP both take several objectives with constraints."""
    import optuna

    from edgeopt.search import samplers
    made = {(name, multi): type(samplers.make(name, [], 0, multi)) for name in (None, "tpe", "gp", "nsga2")
            for multi in (False, True)}
    assert made[(None, False)] is made[("tpe", True)] is optuna.samplers.TPESampler
    assert made[(None, True)] is made[("nsga2", False)] is optuna.samplers.NSGAIISampler
    assert made[("gp", True)] is optuna.samplers.GPSampler


@pytest.mark.parametrize("text, fragment", [
    ('prune = [false]\n"prune.channels" = [0.2, 0.5]\n',
     "prune.channels: never searched, since prune is narrowed to [false] (it is sampled only with prune = true)"),
    ('quantize = ["none", "dynamic"]\nkeep_float = ["auto", ""]\n',
     'keep_float: never searched, since quantize is narrowed to ["none", "dynamic"] (it acts only with int8)'),
])
def test_an_option_the_file_itself_keeps_from_being_sampled_is_refused(tmp_path, text, fragment):
    """It was accepted silently: the study searched neither what the toggle nor what the option said."""
    with pytest.raises(BadInput) as e:
        _dims(tmp_path, text)
    assert fragment in str(e.value)
    _dims(tmp_path, text.replace("[false]", "[true]").replace('"dynamic"]', '"int8"]'))   # either way round: fine
    # one value, what a candidate gets anyway (the option's default): a pin, as a shared space file has, kept
    _dims(tmp_path, text.replace("[0.2, 0.5]", "0.5").replace('["auto", ""]', '[""]'))
    # one value it would never get: taken and never tried, unsaid (a user walkthrough)
    with pytest.raises(BadInput) as e:
        _dims(tmp_path, text.replace("[0.2, 0.5]", "0.3").replace('["auto", ""]', '["auto"]'))
    assert fragment.split(":")[0] + ": never searched, since" in str(e.value), str(e.value)


def test_a_plain_key_shared_by_backends_is_refused_only_where_no_backend_samples_it(tmp_path):
    """A reviewer's case: intel-cpu searches OpenVINO and ONNX Runtime; `quantize = ["int8"]` leaves ONNX Runtime's
    precision unsampled (it acts only unquantized there) while OpenVINO's is searched: the file is fine."""
    from edgeopt.convert import backend_for
    from edgeopt.profiles import load_profile
    from edgeopt.search import space

    intel = load_profile("intel-cpu")
    both = [backend_for(intel), backend_for(intel, "onnxruntime")]
    f = tmp_path / "space.toml"
    f.write_text('quantize = ["int8"]\nprecision = ["fp32", "fp16"]\n')
    dims = {d.name: d for d in space.build(both, "onnx", True, False, None, f)}
    assert dims["openvino.precision"].choices == ("fp32", "fp16")
    f.write_text('quantize = ["none"]\nkeep_float = ["auto", ""]\n')   # no backend's keep_float sampled
    with pytest.raises(BadInput, match="keep_float: never searched, since"):
        space.build(both, "onnx", True, False, None, f)


def test_a_transform_fixed_off_where_it_is_no_dimension_is_what_holds(tmp_path):
    """`distill = false` without --train-data read "distill: not a dimension of this search", so one space file
    could not serve a study with training data and one without; on, it is still refused."""
    from edgeopt.convert import backend_for
    from edgeopt.profiles import load_profile
    from edgeopt.search import space

    f = tmp_path / "space.toml"
    f.write_text('distill = false\nquantize = ["none", "int8"]\n')
    dims = {d.name for d in space.build(backend_for(load_profile("generic")), "pytorch-module", True, False, None, f)}
    assert "distill" not in dims and "quantize" in dims
    for value in ("true", "0", "[0]"):   # 0 is no `false` (0 == False in Python): a value to refuse, as before
        f.write_text(f"distill = {value}\n")
        with pytest.raises(BadInput, match="distill: not a dimension of this search"):
            space.build(backend_for(load_profile("generic")), "pytorch-module", True, False, None, f)


def test_a_backends_prefixed_keys_narrow_it_where_it_is_the_only_backend(tmp_path):
    """A walkthrough: a space file written for intel-cpu's two backends ("openvino.quantize") read "not a dimension
    of this search" once `backend = [...]` or the devices kept one backend."""
    quantize = {d.name: d for d in _dims(tmp_path, '"onnxruntime.quantize" = ["none", "int8"]\n'
                                                   'openvino.quantize = ["int8"]\n')}["quantize"]
    assert quantize.choices == ("none", "int8")   # its own prefix dropped, the other backend's key left alone
    with pytest.raises(BadInput, match=r"space.toml: quantize is narrowed twice, with and without the prefix "
                                       r"onnxruntime\.: give one"):
        _dims(tmp_path, 'quantize = ["none"]\n"onnxruntime.quantize" = ["int8"]\n')
    with pytest.raises(BadInput, match="space.toml: colour: not a dimension"):   # a typo under its own prefix
        _dims(tmp_path, '"onnxruntime.colour" = ["red"]\n')


def test_another_backends_keys_are_checked_where_they_narrow_nothing(tmp_path):
    """Keys of a backend this search leaves out were dropped unread: a typo under it, or a backend the profile
    never runs (`tensorrt.quantize` for generic), passed unsaid."""
    from edgeopt.convert import backend_for
    from edgeopt.profiles import load_profile
    from edgeopt.search import space

    f = tmp_path / "space.toml"
    intel = load_profile("intel-cpu")
    both = [backend_for(intel), backend_for(intel, "onnxruntime")]
    f.write_text('backend = ["openvino"]\n[onnxruntime]\nquantize = ["none"]\nquantise = ["none"]\n')
    with pytest.raises(BadInput, match=r"space.toml: onnxruntime.quantise: not a dimension of backend onnxruntime "
                                       r"\(left out of this search\); its dimensions: quantize, keep_float, precision"):
        space.build(both, "onnx", True, False, None, f, profile_backends=intel.backends)
    f.write_text('"onnxruntime.quantize" = ["none"]\n"tensorrt.quantize" = ["none"]\n')
    generic = load_profile("generic")
    with pytest.raises(BadInput, match=r"space.toml: tensorrt.quantize: not a dimension of this search \(backend "
                                       r"onnxruntime; tensorrt is not among the backends searched here\)"):
        space.build(backend_for(generic), "onnx", True, False, None, f, profile_backends=generic.backends)
    # the profile's own other backend, which these devices lack a runtime for: passed over
    f.write_text('"openvino.quantize" = ["int8"]\n"onnxruntime.quantize" = ["none"]\n')
    kept = space.build(both[1:], "onnx", True, False, None, f, profile_backends=intel.backends)
    assert {d.name: d for d in kept}["quantize"].choices == ("none",)


def test_a_left_out_backends_int8_option_is_no_typo_without_calibration_data(tmp_path):
    """A shared file's `openvino.preset` (an INT8 option) was refused as a typo of a backend left out, whenever
    --calib was absent; and, the backend searched, read "openvino is not among the backends searched" (a review)."""
    from edgeopt.convert import backend_for
    from edgeopt.profiles import load_profile
    from edgeopt.search import space

    f = tmp_path / "space.toml"
    intel = load_profile("intel-cpu")
    both = [backend_for(intel), backend_for(intel, "onnxruntime")]
    f.write_text('backend = ["onnxruntime"]\n"openvino.preset" = ["mixed"]\n')
    assert "quantize" in [d.name for d in space.build(both, "onnx", False, False, None, f,
                                                      profile_backends=intel.backends)]
    f.write_text('"openvino.preset" = ["mixed"]\n')
    with pytest.raises(BadInput) as e:
        space.build(both, "onnx", False, False, None, f, profile_backends=intel.backends)
    assert "openvino.preset: not a dimension of this search" in str(e.value) and "not among" not in str(e.value)
