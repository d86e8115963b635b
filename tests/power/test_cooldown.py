"""--cooldown: the idle reference, the three stopping rules, the bounded wait, and the heartbeat during it."""
import json
import subprocess
import sys

from hypothesis import HealthCheck, given, settings, strategies as st

from device_agent.measure import cooldown
from device_agent.measure.cooldown import CooldownSettings
from powertrees import config, fake_clock, tree, write

ZONE = "thermal_zone0 (cpu-thermal)"


def _cooling_device(root, temps):
    """clock and sleep for cooldown.wait: each sleep moves time on and the zone to its next temperature."""
    clock, advance = fake_clock()
    path = root / "sys/class/thermal/thermal_zone0/temp"
    queue = list(temps)
    write(path, int(queue.pop(0) * 1000))

    def sleep(seconds):
        advance(seconds)
        if queue:
            write(path, int(queue.pop(0) * 1000))
    return clock, sleep


def test_history_keeps_the_last_runs_per_root_and_the_lowest_is_idle(tmp_path):
    path = str(tmp_path / "thermal-idle.json")
    for t in (60.0, 45.0, 50.0):
        cooldown.record_start(path, "/", {ZONE: t})
    cooldown.record_start(path, "/fixture", {ZONE: 20.0})  # another sysfs root never mixes in
    assert cooldown.reference(path, "/") == {ZONE: 45.0}
    for t in range(cooldown.HISTORY_RUNS):
        cooldown.record_start(path, "/", {ZONE: 70.0 + t})
    assert len(json.load(open(path))["/"]) == cooldown.HISTORY_RUNS and cooldown.reference(path, "/") == {ZONE: 70.0}
    assert cooldown.reference(None, "/") == {}
    for i in range(cooldown.HISTORY_ROOTS + 3):  # recorded trees come and go; the device's own "/" stays
        cooldown.record_start(path, "/tree-%d" % i, {ZONE: 30.0})
    kept = json.load(open(path))
    assert "/" in kept and "/fixture" not in kept and len(kept) == cooldown.HISTORY_ROOTS + 1


def test_waits_until_within_margin_of_idle(tmp_path):
    root = tree("rpi5", tmp_path)
    clock, sleep = _cooling_device(root, [70, 66, 60, 55, 51.5, 50])
    doc, warnings = cooldown.wait(config(root), CooldownSettings(True, 2.0, 300.0), {ZONE: 50.0}, clock, sleep)
    assert warnings == [] and doc["reached"] is True and doc["rule"] == "idle"
    assert doc["waited_s"] == 4.0 and doc["end_c"][ZONE] == 51.5 and doc["limits_c"] == {ZONE: 52.0}


def test_a_target_replaces_the_idle_reference(tmp_path):
    root = tree("rpi5", tmp_path)
    clock, sleep = _cooling_device(root, [70, 60, 45])
    doc, _ = cooldown.wait(config(root), CooldownSettings(True, 2.0, 300.0, target_c=45.0), {ZONE: 30.0}, clock, sleep)
    assert doc["reached"] is True and doc["rule"] == "target" and doc["waited_s"] == 2.0


def test_gives_up_at_the_timeout_with_a_warning(tmp_path):
    root = tree("rpi5", tmp_path)
    clock, sleep = _cooling_device(root, [70] * 100)
    doc, warnings = cooldown.wait(config(root), CooldownSettings(True, 2.0, 10.0), {ZONE: 40.0}, clock, sleep)
    assert doc["reached"] is False and doc["waited_s"] == 10.0
    assert warnings == ["cooldown: not back at idle after 10 s (%s 70.0 °C > 42.0); measured warm" % ZONE]


def test_without_a_reference_waits_until_no_zone_is_falling(tmp_path):
    root = tree("rpi5", tmp_path)
    falling = [70 - i for i in range(15)] + [55.2] * 40
    clock, sleep = _cooling_device(root, falling)
    doc, _ = cooldown.wait(config(root), CooldownSettings(True), {}, clock, sleep)
    assert doc["rule"] == "steady" and doc["reached"] is True
    assert 14 + cooldown.STEADY_WINDOW_S <= doc["waited_s"] <= 16 + cooldown.STEADY_WINDOW_S


def test_no_zones_skips_with_the_reason(tmp_path):
    doc, warnings = cooldown.wait(config(tmp_path), CooldownSettings(True), {})
    assert doc["reached"] is False and "no readable thermal zones" in warnings[0]


def test_heartbeat_keeps_beating_while_the_agent_cools_down(bundles, tmp_path):
    """The host declares a device dead after 10 s of silence: a long cooldown must not look like one."""
    root = tree("rpi5", tmp_path)
    p = subprocess.run([sys.executable, "-m", "device_agent", "bench", str(bundles["fp32"]), "--sysfs-root", str(root),
                        "--vcgencmd", str(root / "vcgencmd"), "--cooldown", "--cooldown-target", "10",
                        "--cooldown-timeout", "4.5", "--no-power", "--min-iterations", "20", "--min-seconds", "0",
                        "--warmup-seconds", "0", "--no-accuracy"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    before_measuring = p.stderr.split("[agent] warm-up")[0]
    assert before_measuring.count("[agent-heartbeat]") >= 2 and "[agent] cooldown: thermal_zone0" in before_measuring
    doc = json.loads(p.stdout)
    assert doc["thermal"]["cooldown"]["reached"] is False and doc["thermal"]["cooldown"]["rule"] == "target"
    assert any(w.startswith("cooldown: not back at idle after") for w in doc["warnings"])


def test_a_skipped_cooldown_and_unreadable_zones_read_as_such_in_the_table():
    """With a zone that holds no number, the table read "cooldown NOT reached (None) after 0 s" and dropped the
    thermal row, though the result said why (a user walkthrough)."""
    from edgeopt.report.tables import thermal_rows
    rows = dict(thermal_rows({"start_c_absent": "no readable thermal zones under /sys/class/thermal",
                              "cooldown": {"reached": False, "reason": "no readable thermal zones under "
                                           "/sys/class/thermal to watch", "waited_s": 0.0},
                              "cpufreq": {}, "throttled": False}))
    assert rows["thermal"] == "absent: no readable thermal zones under /sys/class/thermal"
    assert rows["cooldown"] == "skipped: no readable thermal zones under /sys/class/thermal to watch"


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["/", "zones", "time",
                                                                                                   ZONE]), inner,
                                                                                 max_size=3), max_leaves=12))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_damaged_history_costs_its_reference_never_the_run(tmp_path, doc):
    """`{"/": 5}` in the history file failed every later bench on the device (a fuzzing audit)."""
    path = tmp_path / "thermal-idle.json"
    path.write_text(json.dumps(doc))
    cooldown.reference(str(path), "/")
    cooldown.record_start(str(path), "/", {ZONE: 40.0})
    assert cooldown.reference(str(path), "/")[ZONE] <= 40.0
