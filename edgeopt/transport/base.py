"""What every transport shares: ship the agent and bundle (by content hash), run the agent,
turn its stdout into a result document. A transport implements `put` and `run`."""
from __future__ import annotations

import datetime
import json
import pathlib
import re
import time

from device_agent import BUNDLE_GONE, RESULT_SCHEMA

from .. import agent_zipapp, bundle as bundles
from ..agent_zipapp import AGENT_ERROR
from ..errors import BadInput, DeviceFailure
from ..inventory import ALLOWED_SIGNERS_VAR
from ..progress import SILENT
from ..results import parse_time, validate

AGENT_PREFIX = "[agent] "
HEARTBEAT = "[agent-heartbeat]"
RETRY_AT_LEAST_S = 10.0   # of --timeout left for a bench sent again (its bundle cleaned away): else none
# How far a device's clock may read from this host's, beyond the run itself, before its result is dated here
CLOCK_SLACK_SECONDS = 300


class Transport:
    name = ""
    device = ""
    progress = SILENT
    spec = None        # the inventory's DeviceSpec, where the device came from one

    def __init__(self):
        self.transfers = []    # one entry per put(): what was needed, what was actually sent
        self.last_words = ""   # the agent's last line on stderr (run_agent)
        self.trusted = []      # host keys --trust-new-host-keys added on connecting: said in the result

    def put(self, local: pathlib.Path, kind: str) -> str:
        """Make `local` available on the device; returns its path there."""
        raise NotImplementedError

    def run(self, argv: list, on_line, timeout: float) -> tuple:
        """Run argv on the device; stderr lines go to on_line. Returns (exit code, stdout text)."""
        raise NotImplementedError

    def python(self) -> str:
        raise NotImplementedError

    def python_argv(self) -> list:
        """The device's interpreter as argv: an inventory's `python` is a command line
        (`/usr/bin/env python3`), each word of it quoted again on the remote side."""
        spec = getattr(self, "spec", None)
        return list(spec.python_argv) if spec is not None else [self.python()]

    def workdir(self) -> str:
        """The device-side directory for the content-addressed store, run directories and the lock."""
        raise NotImplementedError

    def agent_home(self) -> str:
        """Where the agent is kept on the device (`device doctor` says it)."""
        return f"{self.workdir()}/store"

    def lock_path(self) -> str:
        """The device's lock: one benchmark at a time on the device, whoever starts it."""
        return f"{self.workdir()}/lock"

    def agent_args(self) -> list:
        """Device-side lock (one benchmark at a time) and run directory for `agent bench`."""
        root = self.workdir()
        args = ["--lock", self.lock_path(), "--workdir", f"{root}/runs"]
        signers = (self.spec.vars if self.spec is not None else {}).get(ALLOWED_SIGNERS_VAR)
        return args + (["--allowed-signers", str(signers)] if signers else [])

    def close(self) -> None:
        pass

    def run_agent(self, args: list, progress, timeout: float, shown: dict | None = None) -> tuple:
        """shown: {a path on the device: the name progress shows it by} (the bundle's store path, a hash, by the
        bundle's own file name)."""
        self.progress = progress
        agent = self.put(agent_zipapp.build(), "agent")
        self.last_words = ""   # why it printed no document, if it printed none

        def on_line(line: str):
            if line.startswith(HEARTBEAT):
                return
            if line.startswith(AGENT_PREFIX):
                said = line[len(AGENT_PREFIX):].strip()
                for remote, name in (shown or {}).items():
                    said = said.replace(remote, name)
                progress.status(said)
            else:
                progress.log(line)
                if line.strip():
                    self.last_words = line.strip()

        return self.run(self.python_argv() + [agent] + args, on_line, timeout)

    def probe(self, progress=SILENT, timeout: float = 120.0, power_sensor: str = "auto") -> dict:
        """The agent's facts of the device; `power`: whether it reads `power_sensor` (a profile's, or any)."""
        code, out = self.run_agent(["probe", "--power-sensor", power_sensor], progress, timeout)
        if code != 0:
            raise DeviceFailure(f"device {self.device}: agent probe failed with exit code {code}")
        return parse_document(out, self.device)

    def bench(self, bundle: pathlib.Path, agent_args: list, progress=SILENT, timeout: float = 900.0) -> tuple:
        """(result document, agent exit code). A broken agent still yields a 'failed' document. A bundle removed
        from the device between its upload and the agent's lock (`device clean` from another host: 3 of 6 benches
        beside a clean loop failed) is sent again, once."""
        started = time.monotonic()
        doc, code = self._bench_once(bundle, agent_args, progress, timeout)
        left = timeout - (time.monotonic() - started)   # the retry within --timeout, not a second one (a review)
        if BUNDLE_GONE in str((doc.get("error") or {}).get("message")) and left >= RETRY_AT_LEAST_S:
            progress.status(f"the bundle was removed from {self.device} before it was measured: sending it again")
            doc, code = self._bench_once(bundle, agent_args, progress, left)
        return doc, code

    def _bench_once(self, bundle: pathlib.Path, agent_args: list, progress, timeout: float) -> tuple:
        self.progress = progress
        # The manifest as shipped: the agent refuses a bundle whose manifest arrives different.
        sent = ["--manifest-sha256", bundles.manifest_sha256(bundle), "--lock-wait", f"{lock_wait(timeout):g}"]
        remote_bundle = self.put(pathlib.Path(bundle), "bundle")
        began = host_time()
        code, out = self.run_agent(["bench", remote_bundle] + self.agent_args() + sent + agent_args, progress, timeout,
                                   shown={remote_bundle: pathlib.Path(bundle).name,
                                          remote_bundle.rpartition("/")[2]: pathlib.Path(bundle).name})
        try:
            doc = parse_document(out, self.device)
        except DeviceFailure as e:
            said = f" (exit {code}; its last line on stderr: {self.last_words[:300]})" if self.last_words else ""
            message = f"{e}{said}"
            if self.last_words.startswith(AGENT_ERROR):   # the agent's own account (a Python too old to run it)
                message = f"device {self.device}: {self.last_words[len(AGENT_ERROR):][:300]}"
            doc = {"schema": RESULT_SCHEMA, "status": "failed", "device": {"name": self.device},
                   "error": {"message": message, "exit_code": 3, "kind": "device"}}
            code = code or 3
        doc, code = _as_a_result(doc, code, self.device)
        doc.setdefault("device", {})["name"] = self.device
        _dated_here_if_the_clock_is_off(doc, began, host_time())
        error = doc.get("error")
        stored = remote_bundle.rpartition("/")[2]   # unpacking names it by this alone ("to unpack bundle 1082f8...")
        if isinstance(error, dict) and isinstance(error.get("message"), str) and stored in error["message"] \
                and stored != pathlib.Path(bundle).name:   # `local` keeps the user's own name: nothing to add
            # the agent names the file it was given, a hash in the device's store: the user's name first
            said = remote_bundle if remote_bundle in error["message"] else stored
            error["message"] = error["message"].replace(
                said, f"{pathlib.Path(bundle).name} (on the device {said})", 1)
        doc["transport"] = {"name": self.name, "transfers": self.transfers}
        if self.trusted:
            doc["warnings"] = list(doc.get("warnings") or []) + self.trusted
        return doc, code


_SURROGATE = re.compile("[\ud800-\udfff]")


def lock_wait(timeout: float) -> float:
    """How long the agent waits for another benchmark's device lock: until just before this host gives up on it.
    It waited its own 600 s, so a host's --timeout 10 read "agent did not finish within 10 s" of a device that was
    busy, and the agent went on waiting, then measured for nobody (a walkthrough)."""
    return round(max(timeout - min(10.0, timeout / 4), 0.5), 1)


def host_time() -> float:
    """This host's clock, which a result's time is checked against (one place, for a test to set it ahead)."""
    return time.time()


def _dated_here_if_the_clock_is_off(doc: dict, began: float, ended: float) -> None:
    """A result whose time (the device's clock) lies outside the run as this host timed it is dated by this host's
    clock, the device's reading kept as device.clock_created: a board without a real-time clock (a Pi before NTP)
    dated its results 2000-01-01, and a clock 15 years ahead put one result above every later run in history; the
    regression gate found no earlier baseline (a walkthrough). A clock a few minutes fast did the same to the next
    run after NTP set it right (a clock walkthrough): within the run is the only slack. Off by more than
    CLOCK_SLACK_SECONDS, it is said too."""
    said = parse_time(doc.get("created"))
    if said is None or said.tzinfo is None or began <= said.timestamp() <= ended:
        return
    off = said.timestamp() - (ended if said.timestamp() > ended else began)
    doc["device"]["clock_created"] = doc["created"]
    doc["created"] = datetime.datetime.fromtimestamp(ended, datetime.timezone.utc).isoformat()
    if abs(off) <= CLOCK_SLACK_SECONDS:
        return
    hours = abs(off) / 3600
    apart = f"{hours / 8766:.0f} years" if hours >= 8766 else f"{hours:.1f} h" if hours >= 1 else \
        f"{abs(off) / 60:.0f} min"
    doc["warnings"] = list(doc.get("warnings") or []) + [
        f"the device's clock read {said.isoformat()}, {apart} {'ahead of' if off > 0 else 'behind'} this host's: "
        "the result is dated by this host's clock (set the device's clock, e.g. with NTP, or this host's if it is "
        "the one that is off)"]


def _as_a_result(doc: dict, code: int, device: str) -> tuple:
    """(doc, code), or a failed result where the agent's document is none `check` could read: an `{"status": "ok"}`
    from a wrapper or another agent was a traceback after it had replaced the device's latest good result, and in a
    fleet lost the other devices' (a fuzzing audit). Judged as `check` judges a file, with the device's name, which
    the host adds."""
    try:
        doc = _printable(doc)   # a model file name that is not UTF-8 reaches the manifest, and so the result, so
        named = dict(doc, device=dict(doc["device"], name=device)) if isinstance(doc.get("device"), dict) else doc
        validate(named, f"device {device}: the agent's result document")
    except (BadInput, RecursionError) as e:   # RecursionError: nested near the JSON reader's own limit
        problem = e if isinstance(e, BadInput) else f"device {device}: the agent's result document is nested too deep"
        # a failure the agent itself reported keeps its words and its kind (a bundle refused is exit 2)
        error = doc.get("error") if isinstance(doc.get("error"), dict) else {}
        said = error.get("message") if doc.get("status") == "failed" and isinstance(error.get("message"), str) else ""
        kind, exit_code = ((error.get("kind"), error.get("exit_code")) if said and error.get("exit_code") in (2, 3)
                           else ("device", 3))
        return {"schema": RESULT_SCHEMA, "status": "failed", "device": {"name": device},
                "error": {"message": f"{said + '; and ' if said else ''}{problem} (not kept as a result: an agent of "
                                     "another version on the device, or a wrapper that prints on stdout?)",
                          "exit_code": exit_code, "kind": kind}}, exit_code
    return doc, code


def _printable(value):
    """`value` with every lone surrogate in its text (JSON carries them; no terminal prints them) made U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(v) for v in value]
    return value


def _after_leading_text(stdout: str, device: str) -> dict:
    """The agent's document where something printed before it on stdout (a login script's banner, a wrapper of
    the interpreter): the agent's starts on a line of its own with `{`. Else DeviceFailure naming the first line."""
    start = stdout.find("\n{\n")
    if start >= 0:
        try:
            return json.loads(stdout[start + 1:])
        except ValueError:
            pass
    lines = stdout.strip().splitlines()
    if not lines:
        raise DeviceFailure(f"device {device}: agent printed no result document (no output)")
    first = lines[0][:200]
    raise DeviceFailure(f"device {device}: agent printed no result document (its output began {first!r}, ended "
                        f"{lines[-1][:200]!r}; a login script or wrapper that prints on stdout?)")


def parse_document(stdout: str, device: str) -> dict:
    try:
        doc = json.loads(stdout)
    except RecursionError:
        raise DeviceFailure(f"device {device}: agent output is JSON nested too deep to be a result") from None
    except ValueError:
        doc = _after_leading_text(stdout, device)
    if not isinstance(doc, dict):
        raise DeviceFailure(f"device {device}: agent output is not a JSON object")
    return doc
