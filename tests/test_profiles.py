import pathlib

import pytest

from edgeopt.errors import BadInput
from edgeopt.profiles import list_profiles, load_profile

EXPECTED = {"generic": "onnxruntime", "intel-cpu": "openvino", "raspberry-pi-4": "tflite",
            "raspberry-pi-5": "tflite", "jetson-orin-nano": "tensorrt"}


def test_every_shipped_profile_validates():
    profiles = {p.name: p for p in list_profiles()}
    assert {k: profiles[k].backend for k in EXPECTED} == EXPECTED
    pi4, pi5 = profiles["raspberry-pi-4"], profiles["raspberry-pi-5"]
    assert (pi4.device.cpu, pi4.device.cores) == ("Cortex-A72", 4)
    assert (pi5.device.cpu, pi5.device.cores) == ("Cortex-A76", 4)
    assert 16384 in pi5.device.ram_mb and 8192 in pi4.device.ram_mb
    for p in profiles.values():
        assert p.budgets and p.runtime.power_sensor and p.default_precision
        assert p.backends[0] == p.backend and (p.name == "generic" or "onnxruntime" in p.backends[1:]), p.backends


def test_profiles_cli_list_and_show(cli):
    r = cli("profiles", "list", "--json")
    assert r.exit_code == 0
    assert {p["name"] for p in r.json()} >= set(EXPECTED)
    r = cli("profiles", "show", "raspberry-pi-5")
    assert r.exit_code == 0 and "Cortex-A76" in r.stdout
    # the backend's own options, as declared where they are used: the only place a user learns them
    assert "--backend-option int8_ops" in r.stdout and "'compute'" in r.stdout
    r = cli("profiles", "show", "generic", "--json")
    method = r.json()["backend_options"]["int8_method"]
    assert method["default"] == "auto" and method["choices"] == ["auto", "static", "dynamic"] and "MACs" in method["help"]
    assert r.json()["backend_options"]["max_accuracy_drop"]["range"] == [0.0, 1.0]


def test_unknown_profile_is_exit_2_with_the_known_names(cli):
    r = cli("profiles", "show", "raspbery-pi-5")
    assert r.exit_code == 2
    assert "unknown profile 'raspbery-pi-5'" in r.stderr and "raspberry-pi-5" in r.stderr
    assert "Traceback" not in r.stderr


GOOD = (
    'schema = "edgeopt.profile/1"\nname = "x"\ndescription = "d"\nbackend = "onnxruntime"\n'
    'default_precision = "fp32"\nint8_scheme = "u8s8"\n'
    '[device]\narch = "any"\ncpu = "any"\ncores = 0\nram_mb = [0]\n'
    '[runtime]\nthreads = 1\npower_sensor = "none"\n'
    '[budgets]\nlatency_p90_ms = 5\n'
    '[parity]\nfp32_max_abs_error = 1e-4\nfp16_max_abs_error = 1e-2\nquantized_min_top1_agreement = 0.9\n'
)


@pytest.mark.parametrize("change, message", [
    (("threads = 1", "threads = \"two\""), "runtime.threads must be an integer, got 'two'"),
    (("threads = 1", "threads = 1000000"), "runtime.threads must be in [0, 1024], got 1000000"),
    (("threads = 1", "threads = -1"), "runtime.threads must be in [0, 1024]"),
    (("threads = 1", "threads = true"), "runtime.threads must be an integer, got True"),
    (("cores = 0", "cores = -1"), "device.cores must be in [0, 1024], got -1"),
    (("ram_mb = [0]", "ram_mb = [512, 0]"), "device.ram_mb must be [0] (not fixed) or sizes > 0"),
    (("ram_mb = [0]", "ram_mb = []"), "device.ram_mb must be a non-empty list of integers"),
    (("ram_mb = [0]", "ram_mb = [1.5]"), "device.ram_mb must be a non-empty list of integers"),
    (("arch = \"any\"", "arch = \"sparc\""), "device.arch is not one of any, x86_64"),
    (("cpu = \"any\"", "cpu = \"\""), "device.cpu must be one line of text, not empty"),
    (("name = \"x\"", "name = \"my profile\""), "name must be a non-empty name of letters"),
    (("fp32_max_abs_error = 1e-4", "fp32_max_abs_error = nan"), "parity.fp32_max_abs_error must be finite and >= 0"),
    (("fp32_max_abs_error = 1e-4", "fp32_max_abs_error = -1e-4"), "parity.fp32_max_abs_error must be finite"),
    (("fp16_max_abs_error = 1e-2", "fp16_max_abs_error = inf"), "parity.fp16_max_abs_error must be finite"),
    (("agreement = 0.9", "agreement = 1.5"), "parity.quantized_min_top1_agreement must be finite and in [0, 1]"),
    (("int8_scheme = \"u8s8\"", "int8_scheme = \"full-integer\""),
     "int8_scheme is not one of u8s8, s8s8, s8s8-symmetric (backend onnxruntime)"),
    (("power_sensor = \"none\"", "power_sensor = \"multimeter\""), "runtime.power_sensor is not one of auto"),
    (("latency_p90_ms = 5", "latency_p90_ms = nan"), "budgets.latency_p90_ms must be a finite number >= 0, got nan"),
    (("latency_p90_ms = 5", "latency_p90_ms = -1"), "budgets.latency_p90_ms must be a finite number >= 0, got -1"),
    (("latency_p90_ms = 5", "accuracy_drop = 1.5"), "budgets.accuracy_drop must be a finite number in [0, 1], got 1.5"),
    (("latency_p90_ms = 5", "latency_p90_ms = true"), "budgets.latency_p90_ms must be a finite number >= 0, got True"),
    (("[budgets]", "[[budgets]]"), "budgets must be a table, got [{'latency_p90_ms': 5}]"),
    (("[device]", "[[device]]"), "device must be a table"),
    (("backend = \"onnxruntime\"", "backend = \"coreml\""), "backend is not one of onnxruntime"),
    (("[budgets]\n", "[budgets]\nlatency_p91_ms = 3\n"), "unknown budget 'latency_p91_ms'"),
    (("cores = 0\n", "cores = 0\ncolour = \"red\"\n"), "unknown key device.colour"),
    (("default_precision = \"fp32\"\n", ""), "missing key default_precision"),
    (("[parity]", "[parity"), "not valid TOML"),
    (("backend = \"onnxruntime\"\n", "backend = \"onnxruntime\"\nbackends = [\"coreml\"]\n"),
     "backends names 'coreml', not one of onnxruntime"),
    (("backend = \"onnxruntime\"\n", "backend = \"onnxruntime\"\nbackends = \"openvino\"\n"),
     "backends must be a list of backend names, got 'openvino'"),
    (("backend = \"onnxruntime\"\n", "backend = \"onnxruntime\"\nbackends = [\"tflite\", \"tflite\"]\n"),
     "backends names a backend twice"),
])
def test_malformed_profile_names_the_problem(tmp_path, change, message):
    path = tmp_path / "custom.toml"
    assert change[0] in GOOD
    path.write_text(GOOD.replace(*change))
    with pytest.raises(BadInput) as e:
        load_profile(str(path))
    assert message in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


def test_a_scheme_an_earlier_edgeopt_named_otherwise_is_said_as_renamed(tmp_path):
    """An upgrade walkthrough: a Jetson profile written for an earlier edgeopt read "is not one of tensorrt-qdq"."""
    text = (pathlib.Path(__file__).parent.parent / "profiles" / "jetson-orin-nano.toml").read_text()
    path = tmp_path / "jetson-orin-nano.toml"
    path.write_text(text.replace('int8_scheme = "tensorrt-qdq"', 'int8_scheme = "tensorrt-ptq"'))
    with pytest.raises(BadInput, match="int8_scheme is an earlier edgeopt's name: it is now tensorrt-qdq .*, got "
                                       "'tensorrt-ptq'"):
        load_profile(str(path))


def test_custom_profile_file_loads(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text(GOOD)
    assert load_profile(str(path)).runtime.threads == 1
    # named otherwise than its file: bundles would record a name that --profile cannot find
    other = tmp_path / "custom.toml"
    other.write_text(GOOD)
    with pytest.raises(BadInput, match=r"custom.toml: name must be the file's own name \('custom'\)"):
        load_profile(str(other))


def test_profiles_from_the_environment_are_said_and_a_bad_folder_refused(cli, tmp_path, monkeypatch):
    """A mistyped $EDGEOPT_PROFILES was ignored without a word, and a profile of it that replaces a built-in one
    (its own budgets under the same name) was told apart nowhere but `profiles show`'s path."""
    from conftest import MODEL

    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "generic.toml").write_text((pathlib.Path(__file__).parent.parent / "profiles" / "generic.toml")
                                         .read_text().replace("latency_p90_ms = 50.0", "latency_p90_ms = 5.0"))
    monkeypatch.setenv("EDGEOPT_PROFILES", str(folder))
    listed = {p["name"]: p for p in cli("profiles", "list", "--json").json()}
    assert listed["generic"]["shadows"] and listed["intel-cpu"]["shadows"] is None
    assert "(in place of the built-in)" in cli("profiles", "list", "-q").stdout   # cells whole on one line
    m = cli("package", MODEL, "-o", tmp_path / "g.edgepkg", "--json").json()
    assert m["budgets"]["latency_p90_ms"] == 5 and any("in place of the built-in one" in n for n in m["notes"])
    monkeypatch.setenv("EDGEOPT_PROFILES", str(tmp_path / "no-such-folder"))
    r = cli("profiles", "list")
    assert r.exit_code == 2 and "$EDGEOPT_PROFILES names" in r.stderr and "no-such-folder" in r.stderr
    # one bad file hid every profile (exit 2, nothing listed): the others are listed, the bad one warned of
    (folder / "broken.toml").write_text("name = \n")
    monkeypatch.setenv("EDGEOPT_PROFILES", str(folder))
    r = cli("profiles", "list", "--json")
    assert r.exit_code == 0 and "intel-cpu" in {p["name"] for p in r.json()}, r.stderr
    assert f"edgeopt: warning: profile {folder / 'broken.toml'}: not valid TOML" in r.stderr
    assert cli("package", MODEL, "--profile", "broken", "-o", tmp_path / "b.edgepkg").exit_code == 2   # used: refused


def test_a_backend_the_registry_marks_unavailable_is_a_clear_error(cli, tmp_path, monkeypatch):
    """Every profile backend is implemented now; the registry's None entry still refuses before any work."""
    from conftest import MODEL
    from edgeopt import convert
    monkeypatch.setitem(convert.BACKENDS, "tensorrt", None)
    r = cli("package", MODEL, "--profile", "jetson-orin-nano", "-o", tmp_path / "x.edgepkg")
    assert r.exit_code == 2
    assert "uses backend 'tensorrt', which this version of edgeopt cannot convert for yet" in r.stderr
    assert not (tmp_path / "x.edgepkg").exists()


def test_int8_schemes_match_what_the_backends_read():
    """profiles.INT8_SCHEMES is the list a profile is checked against; the backends' own tables must agree."""
    from edgeopt.compress.nncf_quantize import SCHEME_PRESETS
    from edgeopt.compress.ort_quantize import SCHEMES
    from edgeopt.profiles import INT8_SCHEMES
    assert set(INT8_SCHEMES["onnxruntime"]) == set(SCHEMES)
    assert set(INT8_SCHEMES["openvino"]) == set(SCHEME_PRESETS)
    assert {p.int8_scheme for p in list_profiles() if p.backend == "tflite"} <= set(INT8_SCHEMES["tflite"])
    assert {p.int8_scheme for p in list_profiles() if p.backend == "tensorrt"} <= set(INT8_SCHEMES["tensorrt"])
