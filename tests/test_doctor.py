"""`device doctor`'s reading of a probed device against a profile (the probe itself: tests/transport)."""
from edgeopt import doctor
from edgeopt.profiles import load_profile


def test_the_profiles_other_backends_are_noted_never_failed():
    """intel-cpu hardware runs ONNX Runtime too: doctor says whether `optimize` can try it on this device."""
    intel = load_profile("intel-cpu")
    present = doctor.other_backend_checks({"openvino": "2026.4.1", "onnxruntime": "1.32.0"}, "python3", intel)
    assert present == [{"check": "backend onnxruntime", "ok": True, "hint": "",
                        "detail": "onnxruntime 1.32.0: `optimize` also tries backend onnxruntime"}]
    absent = doctor.other_backend_checks({"openvino": "2026.4.1", "onnxruntime": None}, "python3", intel)
    assert absent[0]["ok"] and absent[0]["note"] and "leaves backend onnxruntime out" in absent[0]["detail"]
    assert absent[0]["hint"] == "python3 -m pip install onnxruntime (optional)"
    assert doctor.other_backend_checks({}, "python3", load_profile("generic")) == []


def test_doctor_says_whether_power_is_measured_and_why_not():
    """The probe names the reader `auto` finds; a profile that names its sensor gets that one or none."""
    pi5, generic = load_profile("raspberry-pi-5"), load_profile("generic")
    pmic = {"reader": "rpi5-pmic", "sensor": "Raspberry Pi 5 PMIC (vcgencmd pmic_read_adc)"}
    assert doctor.power_checks(pmic, pi5) == [{"check": "power", "ok": True, "hint": "",
                                               "detail": "rpi5-pmic: Raspberry Pi 5 PMIC (vcgencmd pmic_read_adc)"}]
    assert doctor.power_reader_for(pmic, "auto") == ("rpi5-pmic", "")
    assert doctor.power_reader_for({"reader": "rapl", "sensor": "x"}, "rpi5-pmic") == (
        None, "it reads rapl, and the profile's bundles ask for rpi5-pmic")
    none = doctor.power_checks({"reader": None, "reason": "no power sensor on this device (tried rapl)"}, generic)
    assert none[0]["ok"] and none[0]["note"] and none[0]["detail"] == \
        "not measured: no power sensor on this device (tried rapl)" and "--power-command" in none[0]["hint"]
    broken = doctor.power_checks({"reader": None, "reason": "power sensor rpi5-pmic found but unreadable: vcgencmd "
                                  "pmic_read_adc failed with exit code 255"}, pi5)[0]   # mend it, not buy a meter
    assert "video group" in broken["hint"] and "--power-command" not in broken["hint"]
    old_agent = doctor.power_checks(None, None)[0]   # an agent from before the probe said
    assert old_agent["detail"] == "not measured: its agent does not say which power sensor it reads"
    assert doctor.power_reader_for(pmic, "none")[0] is None   # the Pi 4's profile: an external meter or nothing


def test_doctor_names_the_interpreter_the_local_agent_runs_with(cli):
    """It said "python3 is Python 3.x": the system's, where `local` runs this host's own interpreter."""
    import sys
    r = cli("device", "doctor", "local", "--json")
    assert r.exit_code in (0, 1), r.stderr
    python = next(c for c in r.json()["checks"] if c["check"] == "python")
    assert python["ok"] and python["detail"].startswith(f"{sys.executable} is Python "), python
    # where the local agent really is: it named a `store` folder that `local` never makes
    from edgeopt.agent_zipapp import build
    agent = next(c for c in r.json()["checks"] if c["check"] == "agent")
    assert agent["detail"] == f"agent runs from {build().parent}", agent



def test_doctor_says_the_free_space_where_bundles_go(cli, monkeypatch):
    """A device with 60 KiB free passed every check, and the bench then failed to unpack (a user walkthrough)."""
    from edgeopt import doctor
    disk = lambda r: next(c for c in r.json()["checks"] if c["check"] == "disk")
    ok = disk(cli("device", "doctor", "local", "--json"))
    assert ok["ok"] and " MiB free for " in ok["detail"], ok
    monkeypatch.setattr(doctor, "MIN_FREE_MB", 10 ** 12)   # more than any disk here
    r = cli("device", "doctor", "local", "--json")
    low = disk(r)
    assert r.exit_code != 0 and not low["ok"] and "`edgeopt device clean` frees" in low["hint"], low


def test_a_local_device_runs_the_interpreter_its_inventory_names(cli, tmp_path):
    """A `local` entry's `python` was ignored: a user who named a venv with other runtimes measured this one's."""
    import os
    import shlex
    import sys
    wrapper = tmp_path / "venv python"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(f"devices:\n  other-venv: {{connection: local, python: \"'{wrapper}'\"}}\n"
                         "  same: {connection: local}\n")
    checks = {}
    for name in ("other-venv", "same"):
        r = cli("device", "doctor", name, "-i", inventory, "--json")
        assert r.exit_code in (0, 1), r.stderr
        checks[name] = next(c for c in r.json()["checks"] if c["check"] == "python")
    assert checks["other-venv"]["detail"].startswith(f"{wrapper} is Python "), checks
    assert checks["same"]["detail"].startswith(f"{sys.executable} is Python "), checks
    r = cli("device", "list", "-i", inventory, "--json")   # what will run, not the inventory's blank
    assert [d["python"] for d in r.json()] == [shlex.quote(str(wrapper)), shlex.quote(sys.executable)], r.stdout


def test_a_local_python_that_does_not_start_or_that_talks_first(cli, tmp_path, bundles):
    """A user review: a `python` that is not there was a traceback and exit 1 from bench, doctor and clean; a
    wrapper (or login script) printing a banner on stdout broke doctor (a traceback) and bench ("no document")."""
    import os
    import sys
    noisy = tmp_path / "noisy.sh"
    noisy.write_text(f"#!/bin/sh\necho 'Welcome to board-7 (motd)'\nexec {sys.executable} \"$@\"\n")
    os.chmod(noisy, 0o755)
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(f"devices:\n  gone: {{connection: local, python: /nonexistent/python3}}\n"
                         f"  noisy: {{connection: local, python: {noisy}}}\n  silent: {{connection: local, python: "
                         "/bin/true}\n")
    said = "device gone: its python '/nonexistent/python3' did not start: No such file or directory"
    r = cli("bench", bundles["fp32"], "-d", "gone", "-i", inventory, "--results-dir", tmp_path / "r")
    assert r.exit_code == 3 and said in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = cli("device", "doctor", "gone", "-i", inventory, "--json")
    python = next(c for c in r.json()["checks"] if c["check"] == "python")
    assert r.exit_code == 3 and not python["ok"] and python["detail"] == said
    r = cli("device", "clean", "gone", "-i", inventory)
    assert r.exit_code == 3 and said in r.stderr
    r = cli("bench", bundles["fp32"], "-d", "noisy", "-i", inventory, "--results-dir", tmp_path / "r", "--json")
    assert r.exit_code == 0 and r.json()["status"] == "ok", r.stderr
    r = cli("device", "doctor", "noisy", "-i", inventory, "--json")
    python = next(c for c in r.json()["checks"] if c["check"] == "python")
    assert python["ok"] and python["detail"].startswith(f"{noisy} is Python 3."), python
    assert cli("device", "clean", "noisy", "-i", inventory).exit_code == 0
    r = cli("device", "doctor", "silent", "-i", inventory, "--json")
    python = next(c for c in r.json()["checks"] if c["check"] == "python")
    assert not python["ok"] and python["detail"] == "'/bin/true' printed no version (no output)"


def test_local_devices_take_their_workdir_and_share_the_hosts_lock(cli, tmp_path, bundles):
    """A local entry's `workdir` was ignored; taken, it must not give each local device a lock of its own: two at
    once on one machine would each measure the other's load. Two agents making the lock's folder at once on a
    new machine also raced (one printed nothing: "no output"), and a failing agent's last words are now said."""
    from edgeopt.inventory import load
    from edgeopt.transport import for_spec
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(f"devices:\n  a: {{connection: local, workdir: {tmp_path / 'wa'}}}\n"
                         f"  b: {{connection: local, workdir: {tmp_path / 'wb'}}}\n"
                         "  broken: {connection: local, python: \"/bin/sh -c 'echo boom >&2; exit 4' x\"}\n")
    a, b = (for_spec(spec) for spec in load(inventory).select()[:2])
    assert (a.workdir(), b.workdir()) == (str(tmp_path / "wa"), str(tmp_path / "wb"))
    assert a.lock_path() == b.lock_path() and a.agent_args()[1] == a.lock_path()
    for device in ("a", "b"):
        r = cli("bench", bundles["fp32"], "-d", device, "-i", inventory, "--results-dir", tmp_path / "r")
        assert r.exit_code == 0 and (tmp_path / f"w{device}" / "runs").is_dir(), r.stderr
    r = cli("bench", bundles["fp32"], "-d", "broken", "-i", inventory, "--results-dir", tmp_path / "r")
    assert r.exit_code == 3 and "(exit 4; its last line on stderr: boom)" in r.stderr, r.stderr
    # `device clean` of a local entry takes the lock its benchmarks take (the host's), not one in its workdir: it
    # found that one free, and removed a running benchmark's run directory (a code review)
    import fcntl
    (tmp_path / "wa" / "runs" / "edgeopt-run-x").mkdir(parents=True)
    with open(a.lock_path(), "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        r = cli("device", "clean", "a", "-i", inventory, "-q")
    assert r.exit_code == 3 and "a benchmark is running on it" in r.stderr, r.stderr
    assert (tmp_path / "wa" / "runs" / "edgeopt-run-x").is_dir() and not (tmp_path / "wa" / "lock").exists()
    assert cli("device", "clean", "a", "-i", inventory).exit_code == 0
    assert not (tmp_path / "wa" / "runs" / "edgeopt-run-x").exists()


def test_an_unknown_inventory_profile_is_a_finding_not_a_refusal(cli, tmp_path):
    """doctor is for finding what is wrong: an inventory profile that does not exist stopped it before the device
    was reached, with a line that named neither the file nor the device (a user walkthrough)."""
    inventory = tmp_path / "inv.yaml"
    inventory.write_text("devices:\n  here: {connection: local, profile: rasberry-pi-5}\n")
    r = cli("device", "doctor", "here", "-i", inventory, "--json")
    assert r.exit_code == 2, r.stderr   # the inventory's defect, as bench says it (it was 3, a device's failure)
    checks = {c["check"]: c for c in r.json()["checks"]}
    assert not checks["profile"]["ok"] and checks["profile"]["detail"].startswith("unknown profile 'rasberry-pi-5'")
    assert checks["profile"]["detail"].endswith(f"(field `profile` of inventory {inventory})")
    shown = cli("device", "doctor", "here", "-i", inventory, "-q").stderr   # the device named once, not twice
    assert shown.count("device here") == 1 and "device here: profile: unknown profile 'rasberry-pi-5'" in shown
    assert checks["python"]["ok"]   # and the device diagnosed all the same
