"""Typed transform options (compress/base.py) and recipe files (recipe.py): every value checked against its
declaration, every file defect one BadInput naming the file and field, flags and files equivalent."""
from __future__ import annotations

import dataclasses
import pathlib

import pytest
from hypothesis import given, settings, strategies as st

from conftest import SAMPLES, bundle_manifest
from edgeopt import recipe
from edgeopt.compress import base
from edgeopt.errors import BadInput

SAMPLE_ONNX = SAMPLES / "digits_cnn.onnx"


@dataclasses.dataclass(frozen=True)
class ToyOptions:
    ratio: float = base.option(0.5, "share to remove", low=0.0, high=0.9, low_open=True, search=(0.1, 0.7))
    passes: int = base.option(1, "passes", low=1, high=10)
    criterion: str = base.option("l2", "ranking", choices=("l1", "l2"))
    verbose: bool = base.option(False, "say more")
    protect: tuple[str, ...] = base.option((), "layers kept")


class Toy(base.Transform):
    name = "toy-test"
    Options = ToyOptions


@pytest.fixture(scope="module", autouse=True)
def toy_registered():
    """The toy transform exists for this module only: optimize's space, in other modules, reads the registry."""
    base.register(Toy)
    yield
    del base.REGISTRY[Toy.name]


def test_options_are_converted_from_text_and_checked():
    o = base.build_options(ToyOptions, {"ratio": "0.25", "passes": "3", "criterion": "l1", "verbose": "yes",
                                        "protect": "fc+head"}, "--toy")
    assert o == ToyOptions(0.25, 3, "l1", True, ("fc", "head"))
    assert base.build_options(ToyOptions, {}, "--toy") == ToyOptions()


@pytest.mark.parametrize("values, fragment", [
    ({"ratio": "0"}, "ratio: 0.0 is out of range (> 0.0)"),
    ({"ratio": 1.5}, "ratio: 1.5 is out of range (<= 0.9)"),
    ({"ratio": "nan"}, "ratio: expected a number"),
    ({"ratio": True}, "ratio: expected a number"),
    ({"passes": "2.5"}, "passes: expected an integer"),
    ({"passes": 0}, "passes: 0 is out of range (>= 1)"),
    ({"criterion": "l3"}, "criterion: 'l3' is not one of l1, l2"),
    ({"verbose": "maybe"}, "verbose: expected true or false"),
    ({"rate": "0.1"}, "unknown option 'rate'; options: ratio, passes, criterion, verbose, protect"),
])
def test_bad_option_is_one_line_naming_it(values, fragment):
    with pytest.raises(BadInput) as e:
        base.build_options(ToyOptions, values, "--toy")
    assert fragment in str(e.value) and str(e.value).startswith("--toy") and "\n" not in str(e.value)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["ratio", "passes", "criterion", "verbose", "protect", "other"]),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
                                 st.lists(st.text(max_size=3), max_size=3))))
def test_option_reader_is_total(values):
    try:
        o = base.build_options(ToyOptions, values, "--toy")
    except BadInput:
        return
    assert 0 < o.ratio <= 0.9 and 1 <= o.passes <= 10 and o.criterion in ("l1", "l2")


def test_recipe_file_and_round_trip(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text('[package]\nquantize = "int8"\nsubset-size = 50\n\n[[transform]]\nname = "toy-test"\nratio = 0.3\n'
                 'protect = ["fc"]\n')
    options, steps = recipe.load(f)
    assert options == {"quantize": "int8", "subset_size": 50}
    assert steps == [recipe.Step("toy-test", ToyOptions(ratio=0.3, protect=("fc",)))]
    again = tmp_path / "again.toml"
    again.write_text(recipe.to_toml(recipe.to_dict(options, steps)))
    assert recipe.load(again) == (options, steps)
    # a manifest's recipe records every key; "" and None are "not set", and `inspect` leaves them out
    shown = recipe.to_toml({"package": {"int8_io": "", "subset_size": None, "quantize": "int8"}, "transform": []})
    assert shown == '[package]\nquantize = "int8"\n'
    # so is performance_hint at its default: a LiteRT bundle's recipe printed OpenVINO's "latency"; another hint shows
    shown = recipe.to_toml({"package": {"performance_hint": "latency", "quantize": "int8"}, "transform": []})
    assert shown == '[package]\nquantize = "int8"\n'
    shown = recipe.to_toml({"package": {"performance_hint": "throughput"}, "transform": []})
    assert shown == '[package]\nperformance_hint = "throughput"\n'


@pytest.mark.parametrize("text, fragment", [
    ("[package\n", "not a readable TOML recipe"),
    ("[package]\nquantize = 8\n", "package.quantize: expected str, got 8"),
    ("[package]\nthread = 2\n", "package.thread: unknown option"),
    ("[package]\nthreads = \"2\"\n", "package.threads: expected int, got '2'"),
    ("[package]\ncalib = \"c.npz\"\n", "package.calib: a recipe holds the method, not its data: give --calib FILE"),
    ("[package]\neval-data = \"e.npz\"\n", "package.eval-data: a recipe holds the method, not its data: give "
                                          "--eval-data FILE"),
    ("[package]\nworkspace-mib = 1.5\n", "package.workspace-mib: expected int, got 1.5"),   # a backend's option
    ("[package]\nsubset_size = \"all\"\n", "package.subset_size: expected int"),         # `int | None`
    ("[[transform]]\nratio = 0.3\n", "transform[0]: needs name"),
    ('[[transform]]\nname = "nope"\n', "unknown transform 'nope'"),
    ('[[transform]]\nname = "toy-test"\nratio = 2.0\n', "transform[0] (toy-test): ratio: 2.0 is out of range"),
    ("[stages]\n", "unknown table 'stages'"),
    ("transform = 3\n", "transform must be an array of tables"),
    ("", "the recipe is empty: it needs a [package] table or a [[transform]]"),   # packaged the defaults silently
    ("# nothing\n", "the recipe is empty"),
])
def test_bad_recipe_names_file_and_field(tmp_path, text, fragment):
    f = tmp_path / "r.toml"
    f.write_text(text)
    with pytest.raises(BadInput) as e:
        recipe.load(f)
    assert str(f) in str(e.value) and fragment in str(e.value), str(e.value)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_recipe_reader_is_total(tmp_path_factory, blob):
    f = tmp_path_factory.mktemp("r") / "r.toml"
    f.write_bytes(blob)
    try:
        recipe.load(f)
    except BadInput as e:
        assert "\n" not in str(e)


def test_missing_recipe_and_non_bundle(tmp_path):
    with pytest.raises(BadInput, match="recipe not found"):
        recipe.load(tmp_path / "none.toml")
    fake = tmp_path / "x.edgepkg"
    fake.write_bytes(b"not a tar")
    with pytest.raises(BadInput, match="not a readable edgeopt bundle"):
        recipe.load(fake)


def test_flags_build_steps_in_a_fixed_order():
    with pytest.raises(BadInput, match="--epochs applies to --distill or --qat"):
        recipe.from_flags(epochs=3)
    # --lr: what an optimize study's best used ("distill(epochs=3, lr=0.0019)") can be given by hand
    distill, qat = recipe.from_flags(distill=True, qat=True, epochs=2, lr=0.0019)
    assert (distill.options.lr, qat.options.lr, distill.options.epochs) == (0.0019, 0.0019, 2)
    assert recipe.from_flags(distill=True)[0].options.lr == 1e-3   # the transform's own default without it
    with pytest.raises(BadInput, match="channels=RATIO .structured. or weights=RATIO"):
        recipe.from_flags(prune="ratio=0.5")
    with pytest.raises(BadInput, match="not both"):
        recipe.from_flags(prune="channels=0.5,weights=0.5")
    with pytest.raises(BadInput, match="is not KEY=VALUE"):
        recipe.from_flags(prune="0.5")


def test_a_bundle_as_recipe_rebuilds_for_the_profile_it_was_packaged_for(cli, tmp_path, monkeypatch):
    """Its recipe's options are that profile's backend's; rebuilding for generic silently dropped the target."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    generic = (pathlib.Path(__file__).parents[2] / "profiles" / "generic.toml").read_text()
    (profiles / "shelf-nuc.toml").write_text(generic.replace('name = "generic"', 'name = "shelf-nuc"'))
    monkeypatch.setenv("EDGEOPT_PROFILES", str(profiles))
    first = cli("package", SAMPLE_ONNX, "-p", "shelf-nuc", "-o", tmp_path / "a.edgepkg", "-q")
    assert first.exit_code == 0, first.stderr
    again = cli("package", SAMPLE_ONNX, "--recipe", tmp_path / "a.edgepkg", "-o", tmp_path / "b.edgepkg")
    assert again.exit_code == 0, again.stderr
    assert bundle_manifest(tmp_path / "b.edgepkg")["profile"]["name"] == "shelf-nuc"
    assert "profile shelf-nuc, as" in again.stderr
    chosen = cli("package", SAMPLE_ONNX, "--recipe", tmp_path / "a.edgepkg", "-p", "generic",
                 "-o", tmp_path / "c.edgepkg", "--json")
    assert chosen.exit_code == 0 and chosen.json()["profile"]["name"] == "generic"
    monkeypatch.delenv("EDGEOPT_PROFILES")
    lost = cli("package", SAMPLE_ONNX, "--recipe", tmp_path / "a.edgepkg", "-o", tmp_path / "d.edgepkg")
    assert lost.exit_code == 2 and "packaged for profile 'shelf-nuc', which is not known here" in lost.stderr
    assert not (tmp_path / "d.edgepkg").exists()


def test_a_bundle_as_recipe_keeps_its_threads_and_budgets(cli, tmp_path):
    """optimize's chosen bundle runs at the threads the study chose and carries the limits it set: a rebuild from
    it lost both (the profile's threads, the profile's budgets), and no flag could set threads."""
    first = cli("package", SAMPLE_ONNX, "--threads", "3", "--budget", "latency_p90_ms=5", "-o", tmp_path / "a.edgepkg",
                "-q")
    assert first.exit_code == 0, first.stderr
    assert bundle_manifest(tmp_path / "a.edgepkg")["runtime"]["threads"] == 3
    one = cli("package", SAMPLE_ONNX, "--threads", "1", "-o", tmp_path / "one.edgepkg", "-q")
    assert one.exit_code == 0 and "onnxruntime, 1 thread by default" in cli("inspect", tmp_path / "one.edgepkg").stdout
    again = cli("package", SAMPLE_ONNX, "--recipe", tmp_path / "a.edgepkg", "-o", tmp_path / "b.edgepkg", "-q")
    assert again.exit_code == 0, again.stderr
    rebuilt = bundle_manifest(tmp_path / "b.edgepkg")
    assert rebuilt["runtime"]["threads"] == 3 and rebuilt["budgets"]["latency_p90_ms"] == 5
    flags = cli("package", SAMPLE_ONNX, "--recipe", tmp_path / "a.edgepkg", "--threads", "1", "--budget",
                "latency_p90_ms=7", "-o", tmp_path / "c.edgepkg", "-q")
    assert flags.exit_code == 0, flags.stderr
    assert bundle_manifest(tmp_path / "c.edgepkg")["runtime"]["threads"] == 1
    assert bundle_manifest(tmp_path / "c.edgepkg")["budgets"]["latency_p90_ms"] == 7


def test_a_bundle_as_recipe_takes_its_calibration_file_while_it_is_unchanged(cli, tmp_path):
    """A rebuild of an INT8 bundle needed --calib, and neither the bundle nor the error said which file."""
    import shutil

    import numpy as np
    calib = tmp_path / "calib.npz"
    shutil.copy(SAMPLES / "digits_calib.npz", calib)
    first = cli("package", SAMPLE_ONNX, "--quantize", "int8", "--calib", calib, "-o", tmp_path / "a.edgepkg", "-q")
    assert first.exit_code == 0, first.stderr
    recorded = bundle_manifest(tmp_path / "a.edgepkg")["compression"]["calibration"]
    assert recorded["file"] == str(calib.resolve()) and len(recorded["sha256"]) == 64
    again = cli("package", SAMPLE_ONNX, "--recipe", tmp_path / "a.edgepkg", "-o", tmp_path / "b.edgepkg")
    assert again.exit_code == 0, again.stderr
    assert f"calibration data {calib.resolve()}, as {tmp_path / 'a.edgepkg'} records it" in again.stderr
    assert bundle_manifest(tmp_path / "b.edgepkg")["compression"]["calibration"]["sha256"] == recorded["sha256"]
    arrays = dict(np.load(calib))
    np.savez(calib, **{k: v * 0.5 for k, v in arrays.items()})   # changed since: not taken silently
    changed = cli("package", SAMPLE_ONNX, "--recipe", tmp_path / "a.edgepkg", "-o", tmp_path / "c.edgepkg")
    assert changed.exit_code == 2 and "needs calibration data" in changed.stderr
    assert f"was calibrated with {calib.resolve()}, which has changed since (sha256 {recorded['sha256'][:12]}" \
        in changed.stderr
    calib.unlink()
    gone = cli("package", SAMPLE_ONNX, "--recipe", tmp_path / "a.edgepkg", "-o", tmp_path / "c.edgepkg")
    assert gone.exit_code == 2 and "which is not there now: give --calib" in gone.stderr
    given = cli("package", SAMPLE_ONNX, "--recipe", tmp_path / "a.edgepkg", "--calib", SAMPLES / "digits_calib.npz",
                "-o", tmp_path / "c.edgepkg", "-q")
    assert given.exit_code == 0, given.stderr   # --calib given: the recorded file is not looked at


@pytest.mark.parametrize("profile", ["generic", "raspberry-pi-5"])   # the Pi's bundle holds them NHWC
def test_a_bundle_as_recipe_takes_the_eval_data_it_carries(cli, tmp_path, profile):
    """A user review: the rebuild carried no eval data, so `check` read the accuracy budget NOT MEASURED where the
    original passed it."""
    first = cli("package", SAMPLE_ONNX, "-p", profile, "--eval-data", SAMPLES / "digits_eval.npz",
                "-o", tmp_path / "a.edgepkg", "--json")
    assert first.exit_code == 0, first.stderr
    again = cli("package", SAMPLE_ONNX, "--recipe", tmp_path / "a.edgepkg", "-o", tmp_path / "b.edgepkg")
    assert again.exit_code == 0, again.stderr
    assert f"eval data: the samples {tmp_path / 'a.edgepkg'} carries" in again.stderr
    rebuilt = bundle_manifest(tmp_path / "b.edgepkg")
    assert rebuilt["data"] == first.json()["data"] and rebuilt["data"]["eval"]["samples"] == 360
    assert rebuilt["source"]["accuracy"] == first.json()["source"]["accuracy"]   # the same samples, the same labels


def test_threads_is_packages_own_option_not_a_backends(cli, tmp_path):
    r = cli("package", SAMPLE_ONNX, "--backend-option", "threads=2", "-o", tmp_path / "a.edgepkg")
    assert r.exit_code == 2 and "--backend-option threads: not a backend's option, but package's own --threads" \
        in r.stderr, r.stderr
    (tmp_path / "r.toml").write_text("[package]\nthreads = 0\n")
    r = cli("package", SAMPLE_ONNX, "--recipe", tmp_path / "r.toml", "-o", tmp_path / "a.edgepkg")
    assert r.exit_code == 2 and "r.toml: package.threads: threads 0: expected a whole number of at least 1" \
        in r.stderr, r.stderr


@pytest.mark.parametrize("spec, fragment", [
    ("rank=0", "--low-rank (lowrank): rank: 0 is out of range (>= 1)"),
    ("rank=-3", "--low-rank (lowrank): rank: -3 is out of range (>= 1)"),   # it said ">= 0"
    ("rank=4,energy=0.9", "--low-rank (lowrank): rank and energy: give one"),
])
def test_low_rank_refuses_rank_zero_and_rank_with_energy(spec, fragment):
    """rank=0 silently meant "use energy"; rank with energy ignored one of them."""
    with pytest.raises(BadInput) as e:
        recipe.from_flags(low_rank=spec)
    assert fragment in str(e.value) and e.value.option == "rank", str(e.value)


def test_low_rank_records_one_mode_and_reads_an_older_recipe_that_held_both():
    fixed, = recipe.from_flags(low_rank="rank=4")
    assert "energy" not in fixed.to_dict() and fixed.to_dict()["rank"] == 4
    assert "rank" not in recipe.from_flags(low_rank="energy=0.8")[0].to_dict()
    older = {"package": {}, "transform": [{"name": "lowrank", "energy": 0.9, "rank": 4, "min_params": 0, "protect": []},
                                          {"name": "lowrank", "energy": 0.8, "rank": 0, "min_params": 0, "protect": []}]}
    text = recipe.to_toml(older)
    assert "rank = 4" in text and "energy = 0.9" not in text and "rank = 0" not in text and "energy = 0.8" in text


def test_a_bundle_as_recipe_of_another_model_says_so(cli, tmp_path):
    """Applying a bundle's recipe to another model (or to the file after it changed) is a use of it, and said: a
    rebuild from the wrong bundle had said nothing (a user walkthrough). A copy of the source is the source."""
    import shutil

    import onnx
    first = cli("package", SAMPLE_ONNX, "-o", tmp_path / "a.edgepkg", "-q")
    assert first.exit_code == 0, first.stderr
    copy = tmp_path / "copy.onnx"
    shutil.copy(SAMPLE_ONNX, copy)
    same = cli("package", copy, "--recipe", tmp_path / "a.edgepkg", "-o", tmp_path / "b.edgepkg")
    assert same.exit_code == 0 and "was packaged from" not in same.stderr, same.stderr
    other = onnx.load(str(SAMPLE_ONNX))
    other.doc_string = "another version"
    onnx.save(other, str(copy))
    changed = cli("package", copy, "--recipe", tmp_path / "a.edgepkg", "-o", tmp_path / "c.edgepkg")
    assert changed.exit_code == 0, changed.stderr
    assert f"{tmp_path / 'a.edgepkg'} was packaged from {SAMPLE_ONNX} (sha256 " in changed.stderr
    assert f"{copy} is another model, or that one changed since (sha256 " in changed.stderr
