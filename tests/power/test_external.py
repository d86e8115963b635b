"""The external meter hook: a shell command that prints watts, at a set rate."""
import pytest

from device_agent.power.base import SensorError
from device_agent.power.external import ExternalReader, parse_watts


def test_parse_takes_the_last_line_with_an_optional_unit():
    assert parse_watts("meter v1.2\n4.25 W\n") == 4.25
    assert parse_watts("3e0\n\n") == 3.0
    with pytest.raises(SensorError, match="not a number of watts"):
        parse_watts("OK\n")


def test_command_is_run_through_the_shell_at_the_given_rate(tmp_path):
    reader, reason = ExternalReader.probe(_config("echo meter; echo 6.5W", 4.0))
    assert reason is None and reader.rate_hz() == 4.0
    assert reader.read().value == 6.5 and reader.describe()["sensor"] == "external meter: `echo` ... (--power-command)"


def test_the_command_is_named_by_its_program_alone_since_its_arguments_may_hold_a_secret():
    """The whole command (a meter's `curl -H 'Authorization: Bearer ...'`) went into every result's power.sensor
    and every failure's message: results and reports are shared, a token in them is leaked."""
    token = "s3cr3t-token"
    reader, reason = ExternalReader.probe(_config(f"curl -s -H 'Authorization: Bearer {token}' http://127.0.0.1:1/w", 1.0))
    assert reader is None and token not in reason and "`curl` ..." in reason, reason
    reader, _ = ExternalReader.probe(_config(f"TOKEN={token} echo 2.5", 1.0))
    assert token not in str(reader.describe()) and reader.read().value == 2.5
    # a quoted assignment with a space in it: split on spaces, its tail was shown as the program (a security review)
    reader, _ = ExternalReader.probe(_config(f"TOKEN='Bearer {token}' sh -c 'echo 2.5'", 1.0))
    assert token not in str(reader.describe()) and "`sh` ..." in str(reader.describe())
    from device_agent.power.base import shown_command
    assert shown_command(f"PASS='open {token}' meter") == "`meter` ..."
    assert shown_command(f"echo '{token}") == "`...`"   # unbalanced: nothing of it


def test_a_failing_or_missing_command_is_refused_with_its_error():
    reader, reason = ExternalReader.probe(_config("echo no meter >&2; exit 3", 1.0))
    assert reader is None and "exit code 3: no meter" in reason
    reader, reason = ExternalReader.probe(_config("", 1.0))
    assert reader is None and "--power-command" in reason


def test_a_meter_that_hangs_is_ended_with_everything_it_started(tmp_path):
    """A hung meter script's `sleep` outlived the timeout, one stray process per reading on the device (a user
    walkthrough): the meter's whole process group goes."""
    import os
    import time

    from device_agent.power.base import run_command
    marker = tmp_path / "child.pid"
    script = tmp_path / "hang.sh"
    script.write_text(f"#!/bin/sh\nsleep 100 &\necho $! > {marker}\nwait\n")
    script.chmod(0o755)
    with pytest.raises(SensorError, match="did not answer within 0.5 s"):
        run_command([str(script)], 0.5)
    child = int(marker.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        try:
            with open(f"/proc/{child}/stat") as f:   # reaped by init soon after: a zombie is gone too
                if f.read().split()[2] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"the meter's child {child} is still running")


def _config(command, rate):
    from device_agent.power.base import SensorConfig
    return SensorConfig(power_sensor="external", power_command=command, power_rate_hz=rate)
