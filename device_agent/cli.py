"""`python -m device_agent probe|verify|bench` (or `python edgeopt-agent.pyz ...`).

stdout carries exactly one JSON document; progress and errors go to stderr.
"""
import argparse
import json
import math
import os
import signal
import sys
import tempfile

from . import EXIT_OK, AgentError, BundleError, __version__
from .lock import MACHINE_LOCK


def _print_json(doc):
    sys.stdout.write(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    sys.stdout.flush()


def cmd_probe(args):
    from .probe import probe

    _print_json(probe(args.power_sensor))
    return EXIT_OK


def _trust(args):
    from .bench import Trust

    return Trust(args.manifest_sha256, args.allowed_signers)


def cmd_verify(args):
    from .bench import signature_status
    from .bundle import unpack

    try:
        if args.workdir:
            os.makedirs(args.workdir, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix="edgeopt-verify-", dir=args.workdir)
    except OSError as e:
        raise AgentError("cannot make a directory to unpack into: %s" % e)
    try:
        trust = _trust(args)
        found = unpack(args.bundle, tmp, trust.manifest_sha256, trust.allowed_signers)
        _print_json({"bundle": args.bundle, "name": found.manifest["name"], "verified": True,
                     "manifest_sha256": found.manifest_sha256, "files": len(found.manifest["files"]),
                     "signature": signature_status(found, trust)})
    finally:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return EXIT_OK


def _sensing(args):
    from .bench import Sensing
    from .measure.cooldown import CooldownSettings
    from .power.base import SensorConfig

    power = SensorConfig(power_sensor="none" if args.no_power else args.power_sensor, sysfs_root=args.sysfs_root,
                         vcgencmd=args.vcgencmd, power_command=args.power_command or "",
                         tegrastats=args.tegrastats,
                         power_rate_hz=args.power_rate or 0.0, idle_seconds=args.idle_seconds)
    cool = CooldownSettings(args.cooldown, args.cooldown_margin, args.cooldown_timeout, args.cooldown_target)
    return Sensing(power, cool)


def cmd_bench(args):
    from .bench import run
    from .measure.latency import LoopSettings
    from .measure.passes import Passes

    settings = LoopSettings(args.warmup_iterations, args.warmup_seconds, args.min_iterations,
                            args.min_seconds, args.max_iterations, args.max_seconds)
    doc, code = run(args.bundle, settings, threads=args.threads, with_accuracy=not args.no_accuracy,
                    timeout=args.timeout, workdir=args.workdir, lock=args.lock, lock_wait=args.lock_wait,
                    machine_lock=args.machine_lock, sensing=_sensing(args),
                    runtime_options=dict(args.runtime_option), trust=_trust(args),
                    passes=Passes(args.throughput, args.profile_layers))
    _print_json(doc)
    if code:
        sys.stderr.write("edgeopt-agent: error: %s\n" % doc["error"]["message"])
    return code


def cmd_measure(args):
    """Internal: the fresh measuring process started by `bench`."""
    from .measure.run import main

    try:
        main(args.root, args.out, args.threads, args.settings, args.accuracy == "1", args.sensors, args.options,
             args.passes)
    except AgentError as e:   # a BundleError stays one (exit 2): the parent saw every child failure as the device's
        with open(args.out, "w") as f:
            json.dump({"error": str(e), "bundle": isinstance(e, BundleError)}, f)
        return e.exit_code
    except Exception as e:  # a defect: the parent reports this line (it sees no stderr remotely); traceback follows
        import traceback

        where = traceback.extract_tb(e.__traceback__)[-1]
        with open(args.out, "w") as f:
            json.dump({"error": "measuring process failed: %s: %s (at %s:%d)" % (
                type(e).__name__, str(e).splitlines()[0] if str(e) else "", os.path.basename(where.filename),
                where.lineno)}, f)
        raise
    return EXIT_OK


def _bounded(kind, ok, what):
    """An argparse type: `kind(text)` that must satisfy `ok`, else "must be `what`"."""
    def parse(text):
        value = kind(text)
        if not ok(value):
            raise argparse.ArgumentTypeError("must be %s" % what)
        return value
    parse.__name__ = kind.__name__   # argparse names it in "invalid float value: 'abc'"
    return parse


def _key_value(text):
    """`key=value` -> (key, value); the value is JSON when it parses (false, 4, "x"), else the text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("must be KEY=VALUE")
    try:
        return key, json.loads(value)
    except (ValueError, RecursionError):   # RecursionError: JSON nested thousands deep is no runtime option either
        return key, value


_positive_int = _bounded(int, lambda v: v > 0, "a positive integer")
_non_negative_int = _bounded(int, lambda v: v >= 0, "an integer, zero or more")
# finite: an infinite time failed the run on its way to an integer (exit 3, a failed result saved)
_non_negative = _bounded(float, lambda v: 0 <= v < math.inf, "a finite number, zero or more")
_positive = _bounded(float, lambda v: 0 < v < math.inf, "a finite positive number")
# A cooling target a board reaches, in °C, above the first and at most the second: -500 waited out the whole
# --cooldown-timeout before every run. The host's --cooldown-target takes the same range (edgeopt/cli.py).
COOLDOWN_TARGET_C = (0, 150)
_celsius = _bounded(float, lambda v: COOLDOWN_TARGET_C[0] < v <= COOLDOWN_TARGET_C[1],
                    "degrees Celsius above %g and at most %g" % COOLDOWN_TARGET_C)


def _sensor_arguments(b):
    import os

    from .power import CHOICES
    from .power.base import SYSFS_ROOT_ENV, TEGRASTATS_ENV, VCGENCMD_ENV

    b.add_argument("--power-sensor", choices=CHOICES, default=None,
                   help="power reader: auto probes all (default: the bundle profile's power_sensor)")
    b.add_argument("--no-power", action="store_true", help="do not measure power")
    b.add_argument("--power-command", default=None, help="external meter: a shell command that prints watts")
    b.add_argument("--power-rate", type=_positive, default=None, help="samples per second (default: the reader's)")
    b.add_argument("--idle-seconds", type=_non_negative, default=1.0, help="idle baseline before warm-up (default 1)")
    b.add_argument("--sysfs-root", default=os.environ.get(SYSFS_ROOT_ENV, "/"),
                   help="read /sys and /proc under this directory (default: $%s or /)" % SYSFS_ROOT_ENV)
    b.add_argument("--vcgencmd", default=os.environ.get(VCGENCMD_ENV, "vcgencmd"),
                   help="the vcgencmd command (default: $%s or vcgencmd)" % VCGENCMD_ENV)
    b.add_argument("--tegrastats", default=os.environ.get(TEGRASTATS_ENV, "tegrastats"),
                   help="the Jetson tegrastats command (default: $%s or tegrastats)" % TEGRASTATS_ENV)
    b.add_argument("--cooldown", action="store_true", help="wait until the device is back at its idle temperature")
    b.add_argument("--cooldown-margin", type=_non_negative, default=2.0, help="°C above idle that counts as cool")
    b.add_argument("--cooldown-timeout", type=_non_negative, default=300.0, help="longest wait in seconds")
    b.add_argument("--cooldown-target", type=_celsius, default=None,
                   help="°C every zone must reach (instead of idle), above 0 and at most 150")


def _trust_arguments(p):
    hex64 = _bounded(str, lambda v: len(v) == 64 and all(c in "0123456789abcdef" for c in v), "64 lowercase hex digits")
    p.add_argument("--manifest-sha256", type=hex64, default=None,
                   help="refuse the bundle unless its manifest.json has this sha256 (the host sends what it read)")
    p.add_argument("--allowed-signers", default=None, metavar="FILE",
                   help="accept only bundles whose manifest is signed (ssh-keygen -Y sign, namespace "
                        "edgeopt-bundle) by a key in this OpenSSH allowed-signers file")


def build_parser(parser_class=argparse.ArgumentParser):
    """parser_class: the host's, to judge flags without printing (its subparsers are of the same class)."""
    from .measure.latency import LoopSettings

    d = LoopSettings()
    # no abbreviations: the host's flags are spelt out, and a misspelt one must fail, not match another
    p = parser_class(prog="edgeopt-agent", description="edgeopt device agent %s" % __version__, allow_abbrev=False)
    sub = p.add_subparsers(dest="command")
    sub.required = True
    pr = sub.add_parser("probe", allow_abbrev=False, help="print this device's facts as JSON")
    from .power import CHOICES
    pr.add_argument("--power-sensor", choices=CHOICES, default="auto",
                    help="the power reader to look for (default auto: the first that works)")
    pr.set_defaults(fn=cmd_probe)
    v = sub.add_parser("verify", allow_abbrev=False, help="check a bundle's files against its manifest")
    v.add_argument("bundle")
    v.add_argument("--workdir", default=None, help="where to unpack (default: the system temp dir)")
    _trust_arguments(v)
    v.set_defaults(fn=cmd_verify)
    b = sub.add_parser("bench", allow_abbrev=False, help="verify, measure and print one edgeopt.result/1 document")
    b.add_argument("bundle")
    b.add_argument("--threads", type=_positive_int, default=None, help="override the bundle's thread count")
    b.add_argument("--warmup-iterations", type=_non_negative_int, default=d.warmup_min_iterations)
    b.add_argument("--warmup-seconds", type=_non_negative, default=d.warmup_min_seconds)
    b.add_argument("--min-iterations", type=_positive_int, default=d.min_iterations)
    b.add_argument("--min-seconds", type=_non_negative, default=d.min_seconds)
    b.add_argument("--max-iterations", type=_positive_int, default=d.max_iterations)
    b.add_argument("--max-seconds", type=_positive, default=d.max_seconds)
    b.add_argument("--timeout", type=_positive, default=600.0, help="kill the measuring process after this many seconds")
    b.add_argument("--no-accuracy", action="store_true", help="skip the eval data even if the bundle has it")
    b.add_argument("--throughput", action="store_true",
                   help="measure throughput (FPS, several inferences in flight) even when the bundle's performance "
                        "hint is latency (a throughput hint measures it anyway)")
    b.add_argument("--profile-layers", action="store_true",
                   help="after the timed loop, a short pass with the runtime's profiler: time per layer")
    b.add_argument("--runtime-option", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="override a runtime option of the bundle, e.g. xnnpack=false (value read as JSON if it is)")
    b.add_argument("--workdir", default=None, help="where to unpack (default: the system temp dir)")
    b.add_argument("--lock", default=None, help="lock file: one benchmark at a time on this device")
    b.add_argument("--lock-wait", type=float, default=600.0,
                   help="seconds to wait for the locks, the workdir's then the machine's, together (default 600)")
    b.add_argument("--machine-lock", default=os.environ.get("EDGEOPT_MACHINE_LOCK") or MACHINE_LOCK,
                   help="with --lock, the lock every workdir and login of this machine takes after its own: one "
                        "measurement at a time on the machine (default $EDGEOPT_MACHINE_LOCK, else %s)"
                        % MACHINE_LOCK)
    _sensor_arguments(b)
    _trust_arguments(b)
    b.set_defaults(fn=cmd_bench)
    m = sub.add_parser("_measure")
    for name in ("root", "out"):
        m.add_argument(name)
    m.add_argument("threads", type=int)
    m.add_argument("settings")
    m.add_argument("accuracy")
    m.add_argument("sensors")
    m.add_argument("options")
    m.add_argument("passes")
    m.set_defaults(fn=cmd_measure)
    return p


def bench_problem(args):
    """What contradicts between bench flags, which the parser judges one at a time; None when nothing does.
    A minimum above its maximum would stop the loop at the maximum, short of the minimum asked for."""
    for low, high in (("min_iterations", "max_iterations"), ("min_seconds", "max_seconds")):
        if getattr(args, low) > getattr(args, high):
            return "--%s %g%s is above --%s %g" % (low.replace("_", "-"), getattr(args, low), _default_said(args, low),
                                                   high.replace("_", "-"), getattr(args, high))
    # flags that do nothing beside another were taken without a word (a user review)
    if args.no_power and (args.power_sensor or args.power_command):
        return "--no-power with --%s: give one" % ("power-sensor" if args.power_sensor else "power-command")
    if args.power_command and args.power_sensor not in (None, "auto", "external"):
        return ("--power-command is the external meter's, and --power-sensor %s reads another: give one"
                % args.power_sensor)
    if args.power_sensor == "external" and not args.power_command:   # it measured, then warned "no meter command"
        return "--power-sensor external reads the meter that --power-command runs: give that command"
    if args.cooldown_target is not None and not args.cooldown:
        return "--cooldown-target applies with --cooldown"
    keys = [key for key, _ in args.runtime_option]
    twice = sorted(set(k for k in keys if keys.count(k) > 1))
    if twice:
        return "--runtime-option %s given twice: give one value" % twice[0]
    return None


def _default_said(args, name):
    """ (its default), where the minimum the user did not give is what contradicts their maximum."""
    from .measure.latency import LoopSettings

    default = {"min_iterations": LoopSettings().min_iterations, "min_seconds": LoopSettings().min_seconds}.get(name)
    return " (its default)" if default is not None and getattr(args, name) == default else ""


def _stop_on_signal(signum, frame):
    raise SystemExit(128 + signum)


def run():
    """The agent as a program (its zipapp, `python -m device_agent`, the measuring child): SIGTERM (a host letting
    go of a `local` device) and SIGHUP (a dropped session) end it through its finally blocks, where by default they
    killed it there and then, and its run directory (a copy of the bundle) stayed on the device until the next run's
    sweep or `device clean` (a walkthrough). Not in main(), which tests and the host call in their own process."""
    from . import progress

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _stop_on_signal)
    progress.on_host_gone = lambda: os.kill(os.getpid(), signal.SIGHUP)   # the host hung up, in effect
    main()


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = bench_problem(args) if getattr(args, "fn", None) is cmd_bench else None
    if problem:
        parser.error(problem)
    try:
        code = args.fn(args)
    except AgentError as e:
        sys.stderr.write("edgeopt-agent: error: %s\n" % e)
        code = e.exit_code
    sys.exit(code)
