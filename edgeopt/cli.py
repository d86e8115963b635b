"""The `edgeopt` command: one small function per verb, each calling one edgeopt.api function.

Exit codes: 0 ok, 1 a budget or check failed, 2 bad input or usage, 3 device, transport or store server failure.
Errors are one line on stderr; --debug shows the traceback.
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import pathlib
import sys

import click

from . import __version__, scratch
from .budgets import KINDS as BUDGET_KINDS
from .errors import BadInput, DeviceFailure, EdgeoptError, first_line, host_file_problem, in_chain

QUANTIZE = click.Choice(["none", "dynamic", "int8", "int8-weights", "int4-weights"])
PRECISION = click.Choice(["fp32", "fp16", "bf16"])
INTERRUPTED = 130  # 128 + SIGINT, as shells report it
TERMINATED = 143   # 128 + SIGTERM: a cancelled CI job, a `kill`
HUNG_UP = 129      # 128 + SIGHUP: the terminal closed
STORE_HELP = ("Results history: sqlite:///PATH (relative; sqlite:////abs/path for an absolute one), or "
              "postgresql://USER:PASSWORD@HOST/DB with edgeopt[postgres] "
              "[default: $EDGEOPT_STORE, else edgeopt.db in --results-dir].")
RESULTS_DIR_HELP = "Where each measurement's result file is written, and the default store (edgeopt.db)."


class FiniteRange(click.FloatRange):
    """click's FloatRange, with nan and the infinities refused: nan passes every bound (it compares false), and
    `--connect-timeout nan` was a traceback, `--dead-after inf` switched the dead-device check off unsaid.
    Named "number": click's "'abc' is not a valid float range" read as if a range had been asked for."""

    name = "number"

    def _describe_range(self) -> str:
        return "" if self.min is None and self.max is None else super()._describe_range()   # not "[x<=None]"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class Count(click.IntRange):
    """click's IntRange, named "integer": its "'x' is not a valid integer range" read as if a range were asked."""

    name = "integer"


def _columns(default: int) -> int:
    """$COLUMNS where it is a width (a pipe has no terminal to ask; `COLUMNS=200 edgeopt history | less`), else
    `default`."""
    text = os.environ.get("COLUMNS", "")
    return int(text) if text.isascii() and text.isdigit() and 40 <= int(text) <= 1000 else default   # not "²"


class Output:
    """What one invocation prints where: JSON on stdout, tables on stdout, progress on stderr."""

    def __init__(self, as_json: bool, quiet: bool, debug: bool):
        from rich.console import Console
        self.as_json, self.quiet, self.debug = as_json, quiet, debug
        self._progress, self.stdout_failed = None, False
        self.out = Console(highlight=False, emoji=False)
        if not self.out.is_terminal:  # pipes and CI logs: wide enough that tables do not wrap, or $COLUMNS
            self.out = Console(highlight=False, emoji=False, width=_columns(120))
        self.out.on_broken_pipe = _reader_gone   # rich's own exits 1, which CI reads as a budget failed
        self.err = Console(stderr=True, highlight=False, emoji=False)

    def progress(self):
        from .progress import SILENT
        if self.quiet or self.as_json:
            return SILENT
        if self._progress is None:
            from .report.progress import RichProgress
            self._progress = RichProgress(self.err, self.debug)
        return self._progress

    def close(self):
        if self._progress is not None:
            self._progress.close()
            self._progress = None

    def failures(self, failed) -> None:
        """Why a verb that reports failures in its table failed (doctor's checks, fleet's devices), as
        (device, what, message): under --quiet, which prints only errors, each on stderr as one line naming the
        device; elsewhere the table already says it."""
        self.quiet_lines(message if message.startswith(f"device {device}:") else f"device {device}: {what}{message}"
                         for device, what, message in failed)

    def quiet_lines(self, lines) -> None:
        """Under --quiet, which prints only errors, what a CI log needs beside the exit code (a device's failure,
        the budgets missed, a package's warnings), each on stderr as one line; elsewhere the output says it."""
        if self.quiet and not self.as_json:
            for line in lines:
                click.echo(f"edgeopt: {line}", err=True)

    def emit_error(self, message: str, exit_code: int) -> None:
        """Under --json, the error as JSON on stdout too (the one line stays on stderr): a script that parses
        stdout read nothing at all, and could not tell a bad input from a crash. Not where stdout itself failed."""
        if self.as_json and not self.stdout_failed:
            with contextlib.suppress(OSError):
                click.echo(json.dumps({"error": {"message": message, "exit_code": exit_code}}, indent=1))

    def emit(self, doc, *renderables, data: bool = False):
        """data: the verb is read-only and its tables ARE the answer (inspect, profiles, device list, history, compare);
        --quiet then still prints them, as plain tab-separated lines without title, borders or colour. Verbs
        whose answer is the exit code (bench, check, package...) print nothing under --quiet.
        Standard output that cannot be written (`bench --json > r.json` on a full disk) is one line and exit 2, where
        it was a traceback and exit 1 (a walkthrough); one whose reader left (`| head -1`) ends the verb without a
        word, as SIGPIPE ends other tools (exit 141). What the verb saved is saved before it prints."""
        with self._writing():
            self._emit(doc, renderables, data)

    def text(self, text: str) -> None:
        """A verb's text answer on stdout (report's Markdown or CSV), written as emit writes."""
        with self._writing():
            click.echo(text, nl=False)

    @contextlib.contextmanager
    def _writing(self):
        try:
            yield
            sys.stdout.flush()   # here, not at the interpreter's exit: a pipe's buffer is written last otherwise
        except BrokenPipeError:
            _reader_gone()
        except OSError as e:
            self.stdout_failed = True
            raise BadInput(f"cannot write standard output: {e.strerror or e}") from e

    def _emit(self, doc, renderables, data: bool):
        self.close()  # a live progress view ends before the results are printed
        if self.as_json:
            click.echo(json.dumps(doc, indent=1, default=str))
        elif not self.quiet:
            for r in renderables:   # a line of text whole on a pipe or in a CI log, where grep finds it
                self.out.print(r, soft_wrap=isinstance(r, str) and not self.out.is_terminal)
        elif data and renderables:   # the first and every further table (compare's regression verdicts), a blank
            from rich.table import Table   # line between; the warnings under them are decoration here
            tables = [renderables[0]] + [r for r in renderables[1:] if isinstance(r, Table)]
            for i, table in enumerate(tables):
                for line in ([""] if i else []) + plain_lines(table):
                    click.echo(line)


def _reader_gone() -> None:
    """stdout's reader closed it: nothing more is wanted there. Exit 141, as a process SIGPIPE ends; stdout pointed
    at /dev/null first, or the interpreter's last flush says "Exception ignored ... BrokenPipeError"."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, sys.stdout.fileno())
    os.close(null)
    sys.exit(141)


def plain_lines(renderable) -> list:
    """A rich Table as tab-separated lines (header first where it shows one); anything else as its text."""
    from rich.errors import MarkupError
    from rich.table import Table
    from rich.text import Text

    def text(cell):
        if isinstance(cell, Text):
            return cell.plain
        try:
            return Text.from_markup(str(cell), emoji=False).plain   # a name's `:b:` is no emoji
        except MarkupError:  # not markup after all: print it as it is
            return str(cell)
    if not isinstance(renderable, Table):
        return [text(renderable)]
    columns = [[text(c) for c in col.cells] for col in renderable.columns]
    rows = [list(row) for row in zip(*columns)]
    if renderable.show_header:
        rows.insert(0, [text(col.header) for col in renderable.columns])
    # "—" is a terminal's absent figure; a tab-separated reader gets an empty field
    return ["\t".join("" if cell == "—" else cell.replace("\n", " ").replace("\t", " ") for cell in row)
            for row in rows]


# Libraries a user's model imports, whose import-time warnings reached every PyTorch command's stderr, -q too:
# torchao (which transformers imports) on its optional kernels for other CPUs, torch on its pytree registrations.
# --debug shows them, as it shows runtime messages.
LIBRARY_LOGGERS = ("torchao", "torch.utils._pytree")


def _quiet_library_loggers() -> None:
    import logging

    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def common(fn):
    """--json, --quiet, --debug on every verb, and the one place errors become exit codes."""
    @click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout, nothing else.")
    @click.option("--quiet", "-q", is_flag=True,
                  help="No progress or decoration: read-only verbs print plain tab-separated lines, the others only warnings, "
                       "errors and the exit code.")
    @click.option("--debug", is_flag=True, help="Show tracebacks and runtime messages.")
    @functools.wraps(fn)
    def wrapper(as_json, quiet, debug, **kwargs):
        out = Output(as_json, quiet, debug)
        if not debug:
            _quiet_library_loggers()
        terminated = []
        previous = _stop_on_sigterm(terminated)
        try:
            code = _run_verb(fn, out, kwargs)
        except EdgeoptError as e:
            if _caused_by_interrupt(e):   # a conversion's error that a Ctrl-C inside a library became: exit 130
                _stopped(out, terminated, KeyboardInterrupt())
            out.close()
            if debug:   # the traceback, and still the error's own exit code: a CI gate debugged reads the same
                import traceback
                traceback.print_exc()
            click.echo(f"edgeopt: error: {e}", err=True)
            out.emit_error(str(e), e.exit_code)
            sys.exit(e.exit_code)
        except KeyboardInterrupt as e:
            _stopped(out, terminated, e)
        except Exception as e:
            # a signal while a native module initialises (onnxruntime's) comes out as its ImportError ("initialization
            # failed"), the KeyboardInterrupt as its cause, and a library's bare `except:` retry (Torch-Pruning's
            # tracing) as the retry's TypeError: a traceback and exit 1 where 130 was due (walkthroughs)
            if not _caused_by_interrupt(e):
                raise
            if debug:   # what the interruption turned into, as --debug shows every error
                import traceback
                traceback.print_exc()
            _stopped(out, terminated, KeyboardInterrupt())
        finally:
            _restore_sigterm(previous)
        out.close()
        sys.exit(code or 0)
    return wrapper


def _stopped(out, terminated: list, e: BaseException):
    """Exit 130 (Ctrl-C), 143 (SIGTERM) or 129 (SIGHUP), saying what a long run kept. Not click's "Aborted!" with
    exit 1, which reads as "a budget failed" to a CI system. Every file edgeopt writes is written atomically, so
    what was saved before the signal is whole."""
    from .signals import signals_held

    with signals_held():   # stopping already: a second Ctrl-C (a double press, `timeout`'s group) cut the line short
        how, code = _how_stopped(terminated)
        if code == HUNG_UP:
            _away_from_the_terminal()
        with contextlib.suppress(OSError):
            out.close()
        said = f"{how}: {e}" if str(e) else how   # a long run says what it kept
        try:
            click.echo(f"edgeopt: {said}", err=True)
            out.emit_error(said, code)
        except OSError:   # a terminal that hung up takes no more lines: the exit code still says it
            pass
        sys.exit(code)


def _away_from_the_terminal() -> None:
    """After SIGHUP, a standard stream that is a terminal writes to /dev/null: the terminal is gone, and a write
    there (rich's live view stopping) raised EIO, exit 1 with a traceback (a review). Pipes and files keep what
    is said, the --json error included."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            with contextlib.suppress(OSError):
                if os.isatty(fd):
                    os.dup2(null, fd)
    finally:
        os.close(null)


def _how_stopped(terminated: list) -> tuple:
    """(what stopped the run, its exit code): Ctrl-C 130, SIGTERM 143, SIGHUP 129."""
    import signal

    if not terminated:
        return "interrupted", INTERRUPTED
    if terminated[0] == signal.SIGHUP:
        return "hung up (SIGHUP)", HUNG_UP
    return "terminated (SIGTERM)", TERMINATED


def _caused_by_interrupt(e: BaseException) -> bool:
    return in_chain(e, lambda cause: isinstance(cause, KeyboardInterrupt)) is not None


def _run_verb(fn, out, kwargs: dict):
    """The verb, with this host's file system's refusals (a name too long, a disk full where a library wrote) as
    bad input: one line and exit 2, where they were a traceback and exit 1."""
    try:
        return fn(out, **kwargs)
    except OSError as e:
        said = host_file_problem(e)
        if said is None:
            raise
        raise BadInput(said) from e
    except MemoryError as e:   # numpy's "Unable to allocate 36.6 GiB ...": a traceback and exit 1, no --json error
        raise BadInput(f"this host ran out of memory: {first_line(e)} (a smaller --input-shape or data file, or a "
                       "host with more memory)") from e


def _stop_on_sigterm(terminated: list) -> dict:
    """SIGTERM (a cancelled CI job) and SIGHUP (its terminal closed) stop a run as Ctrl-C does: the devices let go,
    what was gathered kept and said, exit 143 or 129. They killed the process without a word: a fleet's or a
    study's --resume hint was lost, and SIGHUP left a package's half-written bundle and scratch folder behind (a
    walkthrough). Returns the handlers they replaced."""
    import signal

    def stop(signum, frame):
        terminated.append(signum)
        raise KeyboardInterrupt
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:   # under nohup: asked to go on
            continue
        try:
            previous[sig] = signal.signal(sig, stop)
        except ValueError:   # not the main thread (an embedding program's): its own handler stays
            pass
    return previous


def _restore_sigterm(previous: dict) -> None:
    """The handlers before the verb's (a program that runs verbs in-process keeps its own)."""
    import signal

    for sig, handler in previous.items():
        if handler is not None:
            signal.signal(sig, handler)


def ssh_options(fn):
    """Inventory, host-key and store options for verbs that reach devices."""
    @click.option("--inventory", "-i", type=click.Path(),
                  help="Devices: edgeopt YAML, or any Ansible inventory (file, directory, plugin, script).")
    @click.option("--known-hosts", type=click.Path(dir_okay=False),
                  help="known_hosts file [default: the ssh config's UserKnownHostsFile, else ~/.ssh/known_hosts].")
    @click.option("--trust-new-host-keys", is_flag=True,
                  help="Trust an unknown host key on first use and remember it (a changed key is still refused).")
    @click.option("--ssh-config", type=click.Path(dir_okay=False), help="ssh config for host aliases [default: ~/.ssh/config].")
    @click.option("--connect-timeout", type=FiniteRange(min=0.1), default=10.0, show_default=True,
                  help="Seconds to reach a device and log in.")
    @click.option("--dead-after", type=FiniteRange(min=1), default=8.0, show_default=True,
                  help="Declare a device dead after this many seconds without a sign of life (the agent beats every 2 s).")
    @functools.wraps(fn)
    def wrapper(known_hosts, trust_new_host_keys, ssh_config, connect_timeout, dead_after, **kwargs):
        from .transport.ssh import SshOptions
        kwargs["ssh"] = SshOptions(known_hosts=known_hosts, trust_new_host_keys=trust_new_host_keys,
                                   ssh_config=ssh_config, connect_timeout=connect_timeout,
                                   dead_peer_timeout=dead_after)
        return fn(**kwargs)
    return wrapper


def loop_options(fn):
    """How long the agent measures: the same flags for one device and a fleet."""
    from device_agent.measure.latency import LoopSettings

    d = LoopSettings()   # the agent's defaults, said here: the agent applies them, so click has none of its own
    for name, kind, text in reversed([
            ("--threads", Count(min=1), "Override the thread count the bundle or its profile sets."),
            ("--min-iterations", Count(min=1),
             f"Run at least this many timed inferences [default: {d.min_iterations}]."),
            ("--min-seconds", FiniteRange(min=0), f"... and for at least this many seconds [default: {d.min_seconds:g}]."),
            ("--max-iterations", Count(min=1),
             f"Stop after this many timed inferences, whatever --min-seconds asks [default: {d.max_iterations}]."),
            ("--max-seconds", FiniteRange(min=0, min_open=True),
             f"... or after this many seconds [default: {d.max_seconds:g}]."),
            ("--warmup-iterations", Count(min=0),
             f"Warm-up runs before timing (at least) [default: {d.warmup_min_iterations}]."),
            ("--warmup-seconds", FiniteRange(min=0),
             f"Warm-up seconds before timing (at least) [default: {d.warmup_min_seconds:g}].")]):
        fn = click.option(name, type=kind, help=text)(fn)
    fn = click.option("--throughput", is_flag=True, default=None,
                      help="Also measure throughput (FPS, several inferences in flight), as the runtime's own tool "
                           "does; a bundle whose performance hint is throughput measures it anyway.")(fn)
    fn = click.option("--profile-layers", is_flag=True, default=None,
                      help="After the timed loop, a short pass with the runtime's profiler: the layers that take "
                           "the most time.")(fn)
    fn = click.option("--runtime-option", "runtime_option", multiple=True, metavar="KEY=VALUE",
                      help="Override a runtime option of the bundle for this run, e.g. xnnpack=false (tflite).")(fn)
    fn = click.option("--timeout", default=900.0, show_default=True,
                      help="Give up on a device after this many seconds (at least 10).")(fn)
    fn = click.option("--results-dir", default="results", show_default=True, type=click.Path(file_okay=False),
                      help=RESULTS_DIR_HELP)(fn)
    fn = click.option("--store", "store_url", help=STORE_HELP)(fn)
    fn = click.option("--allowed-signers", metavar="DEVICE_PATH",
                      help="OpenSSH allowed-signers file ON THE DEVICE: run only bundles signed (package --sign-key) "
                           "by a key in it [default: the inventory var edgeopt_allowed_signers].")(fn)
    return fn


SENSING_KEYS = ("power_sensor", "power_command", "power_rate", "no_power", "idle_seconds", "cooldown",
                "cooldown_timeout", "cooldown_target")


def sensing_options(fn):
    """Power and thermal: which sensor, the idle baseline, cooling down first. Same flags for one device and a fleet."""
    from device_agent.cli import COOLDOWN_TARGET_C

    from .profiles import POWER_SENSORS
    for name, kind, text in reversed([
            ("--power-sensor", click.Choice(POWER_SENSORS), "Power reader [default: the profile's power_sensor]."),
            ("--power-command", str, "External meter: a shell command, run on the device, that prints watts."),
            ("--power-rate", FiniteRange(min=0, min_open=True), "Power samples per second [default: the reader's]."),
            ("--idle-seconds", FiniteRange(min=0), "Idle baseline before warm-up [default: 1]."),
            ("--cooldown-timeout", FiniteRange(min=0), "Longest --cooldown wait in seconds [default: 300]."),
            ("--cooldown-target", FiniteRange(*COOLDOWN_TARGET_C, min_open=True),
             "°C every thermal zone must reach (instead of the recorded idle).")]):
        fn = click.option(name, type=kind, help=text)(fn)
    fn = click.option("--no-power", is_flag=True, default=None, help="Do not measure power.")(fn)
    fn = click.option("--cooldown", is_flag=True, default=None,
                      help="Wait until the device is back at its idle temperature before measuring.")(fn)
    return fn


def _loop(loop: dict) -> tuple:
    """(loop flags, sensing flags) the user actually gave (the agent's defaults stand for the rest)."""
    given = {k: v for k, v in loop.items() if v is not None and v != ()}
    return ({k: v for k, v in given.items() if k not in SENSING_KEYS},
            {k: v for k, v in given.items() if k in SENSING_KEYS})


COMMON_FLAGS = ("--json", "--quiet", "-q", "--debug")


def _common_flags_last(args: list, group: click.Group = None) -> list:
    """`edgeopt --quiet bench ...` as `edgeopt bench ... --quiet`: the flags every verb takes (`common`), typed
    before the verb as with git or docker, were refused as no option of `edgeopt`; so were they between a group
    and its verb (`edgeopt profiles --json list`). They go after the verb's path, before any `--`."""
    moved, path, command = [], [], group
    for word in args:
        if word in COMMON_FLAGS:
            moved.append(word)
        elif command is None and not path or isinstance(command, click.Group) and word in command.commands:
            path.append(word)
            command = command.commands[word] if command is not None else None
        else:
            break
        if command is not None and not isinstance(command, click.Group):
            break
    lead = len(moved) + len(path)
    if not moved or not path and lead == len(args):   # flags alone: `edgeopt --json`'s own answer
        return args
    rest = args[lead:]
    end = rest.index("--") if "--" in rest else len(rest)   # after `--` every word is an argument
    return path + rest[:end] + moved + rest[end:]


class _NoEmptyValues(click.Command):
    """A command that refuses an empty option value as the usage error it is: `check --baseline ""` (an unset
    $BASE in CI) compared with whatever the current folder held, `--junit ""` wrote no file, `-o ""` took the
    default, all with exit 0 (a walkthrough)."""

    def parse_args(self, ctx: click.Context, args: list) -> list:
        if not ctx.resilient_parsing and not set(args) & set(ctx.help_option_names):   # --help answers first
            given, _, _ = self.make_parser(ctx).parse_args(args=list(args))
            for param in self.get_params(ctx):
                if isinstance(param, click.Option) and not param.is_flag and param.name in given:
                    values = given[param.name] if isinstance(given[param.name], (list, tuple)) else [given[param.name]]
                    if "" in values:
                        raise click.BadParameter("an empty value: give one, or leave the option out", ctx, param)
        return super().parse_args(ctx, args)


class _JsonUsageErrors(click.Group):
    """Click's own usage errors (a missing argument, an unknown option, a value out of range) as JSON on stdout
    under --json too, as edgeopt's errors are (`common`): a script reading stdout got nothing for them. The flags
    every verb takes are taken before the verb too (_common_flags_last)."""

    command_class = _NoEmptyValues
    group_class = type   # the groups under it (device, fleet, ...) make their verbs of _NoEmptyValues too

    def main(self, args=None, **kwargs):
        _replace_what_the_terminal_cannot_show()
        args = _common_flags_last(list(sys.argv[1:] if args is None else args), self)
        flags = [a for a in args if a in COMMON_FLAGS]
        if args[:1] == ["--version"] and flags:   # `edgeopt --json --version` was "No such option '--json'"
            click.echo(json.dumps({"name": "edgeopt", "version": __version__}, indent=1) if "--json" in flags
                       else f"edgeopt, version {__version__}")
            sys.exit(0)
        if all(a in COMMON_FLAGS for a in args[1:]) and (not args or args[0] in COMMON_FLAGS or isinstance(
                self.commands.get(args[0]), click.Group)):   # `edgeopt --json` or a group alone (`edgeopt -q device`)
            args = [a for a in args[:1] if a not in COMMON_FLAGS]   # takes no flag: its usage says what it has
        if not kwargs.get("standalone_mode", True):
            return super().main(args, **kwargs)
        try:
            code = super().main(args, **dict(kwargs, standalone_mode=False))   # only --help and --version return
        except click.ClickException as e:
            _show_usage_error(e, machine=bool(flags))
            if "--json" in flags:
                click.echo(json.dumps({"error": {"message": e.format_message(), "exit_code": e.exit_code}}, indent=1))
            sys.exit(e.exit_code)
        except click.exceptions.Abort:   # click's word for Ctrl-C before a verb began: 1 read as "a budget failed"
            click.echo("edgeopt: interrupted", err=True)
            sys.exit(INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)


def _replace_what_the_terminal_cannot_show() -> None:
    """A character the output's encoding lacks (a table's border, an em dash, under LANG=en_US.ISO-8859-1) is
    written as its ASCII stand-in, else "?": it was a UnicodeEncodeError's traceback and exit 1 after the work was
    done and saved (a walkthrough), and "mean ? std" read as a question (an accessibility walkthrough)."""
    import codecs
    codecs.register_error("edgeopt-ascii", _ascii_stand_in)
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if encoding != "utf8" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="edgeopt-ascii")


# what edgeopt's own text writes, in ASCII where the terminal has no Unicode (a serial console under LANG=C)
ASCII_STAND_INS = {"—": "-", "–": "-", "±": "+/-", "…": "...", "·": "-", "→": "->", "≤": "<=", "≥": ">=",
                   "×": "x", "✓": "ok", "✗": "x", "◆": "*", "●": "*", "≈": "~", "µ": "u", "°": " deg", "▲": "^",
                   "▼": "v", "‑": "-"}


def _ascii_stand_in(error: UnicodeEncodeError) -> tuple:
    text = error.object[error.start:error.end]
    return "".join(ASCII_STAND_INS.get(ch, "?") for ch in text), error.end


def _show_usage_error(e: click.ClickException, machine: bool = False) -> None:
    """Click's usage error as one line in edgeopt's own form, with the verb's help named: click's own is four
    lines (the usage, a hint, a blank line, the error) in another form than every other error's.
    machine (--json, --quiet or --debug given): `edgeopt` or a group alone is such an error too, not its help."""
    if isinstance(e, click.exceptions.NoArgsIsHelpError):   # `edgeopt` or a group alone: its help is the answer
        if not machine:
            e.show()
            return
        e.message = f"a command is needed: one of {', '.join(e.ctx.command.list_commands(e.ctx))}"
    where = e.ctx.command_path if isinstance(e, click.UsageError) and e.ctx is not None else None
    hint = f" (see '{where} --help')" if where else ""
    message = e.format_message()
    click.echo(f"edgeopt: error: {message[:-1] if hint and message.endswith('.') else message}{hint}", err=True)


@click.group(cls=_JsonUsageErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeopt")
def main():
    """Package neural networks for small machines, measure them on the device, check budgets.

    \b
      edgeopt demo                                   # the shipped sample, end to end
      edgeopt inspect model.onnx
      edgeopt package model.onnx --profile generic --quantize int8 --calib calib.npz
      edgeopt bench model-int8.edgepkg --device local
      edgeopt check results/model-int8@local.json --budget latency_p90_ms=5

    Every command takes --json (one JSON document on stdout), -q/--quiet (plain lines, no progress) and --debug,
    before or after its name (edgeopt --json check ...).

    Exit codes: 0 ok, 1 a budget failed, 2 bad input, 3 device, transport or store server failure, 130
    interrupted (Ctrl-C), 143 terminated (SIGTERM), 129 hung up (SIGHUP).
    """


def _shapes(items):
    from .models import parse_input_shapes
    return parse_input_shapes(items)


def _once(given: tuple, flag: str):
    """A transform flag's one value (None when absent): given twice, click kept the last and the first was
    dropped without a word (`--prune channels=0.5 --prune weights=0.3` ran the sparsity step alone)."""
    if len(given) > 1:
        raise BadInput(f"{flag} given {len(given)} times ({', '.join(given)}): give it once; a recipe file "
                       "(--recipe) lists transforms in the order they run")
    return given[0] if given else None


def _budgets(items):
    from .budgets import parse_budget_args
    return parse_budget_args(items)


@main.command()
@click.argument("model")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=D,D,..",
              help="Fix an input's shape (dynamic dims, or the example input of a PyTorch model).")
@click.option("--allowed-signers", type=click.Path(dir_okay=False), metavar="FILE",
              help="A bundle: check its signature against this OpenSSH allowed-signers file on this machine, as "
                   "bench --allowed-signers does on the device (exit 2 where it does not verify).")
@common
def inspect(out, model, input_shapes, allowed_signers):
    """Describe a model: inputs, outputs, opset, parameters, FLOPs, dynamic dims.

    MODEL is an .onnx file, a TorchScript (.pt, .pth, .torchscript) or ExportedProgram (.pt2) file, a
    PyTorch `module:callable` / `file.py:callable` returning an nn.Module, an OpenVINO IR .xml, or a
    LiteRT .tflite.

    A bundle (.edgepkg), every member verified first: what it carries to the device (profile, compression,
    threads, inputs, budgets, parity, signature) and the recipe that rebuilds it (`package --recipe`).
    """
    from . import api
    from .report.tables import bundle_rows, inspect_rows, key_values
    info = api.inspect(model, _shapes(input_shapes), allowed_signers)
    if "manifest_sha256" not in info:
        out.emit(info, key_values(f"Model {model}", inspect_rows(info)), data=True)
        return
    from rich.text import Text

    from .recipe import to_toml
    recipe = [f"Recipe (`edgeopt package MODEL --recipe {model}` rebuilds it):", Text(to_toml(info["recipe"]))] \
        if info.get("recipe") else []
    stages = [] if out.quiet else _stage_table(info)   # -q: the key/value lines alone, as scripts read them
    out.emit(info, key_values(f"Bundle {model}", bundle_rows(info)), *stages, *recipe, data=True)


STAGE_FIGURES = ("parameters", "flops", "bytes", "latency_ms", "top1")   # what transform_table shows of a stage


def _stage_table(manifest: dict) -> list:
    """[the transforms' per-stage table] as package showed it (inspect's compression row said "transforms prune +
    distill (below)" above nothing), where every stage's figures are numbers; else []: the manifest is a bundle's,
    verified by its hashes but written by whoever made it."""
    from .budgets import number_in
    from .report.tables import transform_table

    stages = manifest.get("transforms") if isinstance(manifest.get("transforms"), list) else []
    readable = stages and all(isinstance(s, dict) and isinstance(s.get("stage"), str) and isinstance(
        s.get("figures"), dict) and all(s["figures"].get(k) is None or number_in(s["figures"][k], 0, math.inf)
                                        is not None for k in STAGE_FIGURES) for s in stages)
    return [transform_table(stages)] if readable else []


@main.group()
def profiles():
    """Hardware profiles: list them or show one."""


@profiles.command("list")
@common
def profiles_list(out):
    """List the known hardware profiles."""
    from . import api
    from .report.tables import profiles_table
    broken = []
    items = api.profiles(broken)
    for error in broken:   # the others are listed: one bad file of $EDGEOPT_PROFILES hid them all
        click.echo(f"edgeopt: warning: {error}; left out of the list", err=True)
    out.emit(items, profiles_table(items), data=True)


@profiles.command("show")
@click.argument("name")
@common
def profiles_show(out, name):
    """Show one profile (by name, or a path to a .toml file)."""
    from . import api
    from .report.tables import key_values
    p = api.profile(name)
    rows = [(k, _profile_value(k, v)) for k, v in p.items() if not isinstance(v, dict)]
    rows += [(f"{section}.{k}", _profile_value(k, v)) for section in ("device", "runtime", "budgets", "parity")
             for k, v in p[section].items()]
    options = api.backend_options(p["backend"])
    rows += [(f"--backend-option {k}", _option_text(o)) for k, o in options.items()]
    out.emit(dict(p, backend_options=options), key_values(f"Profile {name}", rows), data=True)


def _profile_value(key: str, value):
    """A profile's value as its TOML comments say it: "any" for what the profile leaves open, "—" for a field
    that does not apply to the backend, lists as lists."""
    if value is None:
        return "— (does not apply to this backend)"
    if value == "":
        return "none"
    if key == "ram_mb" and list(value) == [0]:
        return "any (not fixed by the profile)"
    if key == "cores" and value == 0:
        return "0 (whatever the device has)"
    if key == "threads" and value == 0:
        return "0 (one per physical core of the device)"
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else value


def _option_text(option: dict) -> str:
    low, high = option.get("range", (None, None))
    allowed = ("one of " + ", ".join(repr(c) for c in option["choices"]) if "choices" in option else
               f"{low} to {high}" if None not in (low, high) else f">= {low}" if low is not None else
               f"<= {high}" if high is not None else "")
    default = "unset" if option["default"] is None else repr(option["default"])
    return f"default {default}{'; ' + allowed if allowed else ''}: {option['help']}"


@main.command()
@click.argument("model")
@click.option("--profile", "-p", default="generic", show_default=True, help="Hardware profile name or .toml path.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Bundle path [default: NAME.edgepkg].")
@click.option("--backend", help="Another of the backends the profile's hardware runs, e.g. onnxruntime for "
              "intel-cpu or raspberry-pi-5 [default: the profile's own]; `edgeopt profiles show PROFILE` lists them.")
@click.option("--precision", type=PRECISION, help="Float precision [default: the profile's].")
@click.option("--quantize", type=QUANTIZE, default="none", show_default=True,
              help="int8: static, calibrated (needs --calib); dynamic: int8 weights, activations quantized "
                   "at run time (onnxruntime, tflite); int8-weights / int4-weights: weight-only (openvino).")
@click.option("--calib", type=click.Path(), help=".npz of sample inputs for INT8 calibration: one array per input, (N, *input shape) or "
                   "samples along the batch axis (README: calibration and eval data format).")
@click.option("--eval-data", type=click.Path(), help=".npz of inputs (+ `labels`) shipped for on-device accuracy.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=D,D,..", help="Fix an input's shape.")
@click.option("--budget", "budgets", multiple=True, metavar="KEY=VALUE",
              help="Budget recorded in the bundle, over the profile's; KEY=none drops one of the profile's.")
@click.option("--name", help="Bundle name: results, history and baselines are kept per name [default: -o's file "
                              "stem; without -o, the model's name (its file's stem, and the callable unless it is "
                              "`build`: nets.py:lstm is nets-lstm; a module's callable's name) + its precision, or "
                              "its quantization: -fp32, -fp16, -int8, -dynamic].")
@click.option("--allow-mismatch", is_flag=True, help="Write the bundle even if the parity check fails.")
@click.option("--force", is_flag=True,
              help="Overwrite the output even if it is a bundle for another profile, or not a bundle.")
@click.option("--preset", type=click.Choice(["performance", "mixed"]),
              help="NNCF INT8 preset (openvino) [default: the profile's int8_scheme].")
@click.option("--subset-size", type=Count(min=1),
              help="Calibration samples NNCF uses (openvino) [default: min(300, samples); fewer than 100 "
                   "samples need this set explicitly].")
@click.option("--max-accuracy-drop", type=FiniteRange(0, 1),
              help="Accuracy-aware INT8: revert layers to float until the top-1 drop on --eval-data (with "
                   "labels) is at most this, e.g. 0.01 (openvino: NNCF's accuracy control; any backend with "
                   "--keep-float auto).")
@click.option("--performance-hint", type=click.Choice(["latency", "throughput"]), default="latency",
              show_default=True, help="OpenVINO performance hint the device compiles with (openvino).")
@click.option("--int8-io", type=click.Choice(["int8", "float"]),
              help="Full-integer INT8 (tflite): int8 or float model input/output [default: the profile's "
                   "int8_scheme; full-integer = int8].")
@click.option("--sign-key", type=click.Path(dir_okay=False),
              help="Sign the manifest with this SSH key (ssh-keygen -Y sign, namespace edgeopt-bundle); a key "
                   "with a passphrase from ssh-agent (ssh-add it first). Devices check it with bench "
                   "--allowed-signers, this host with inspect --allowed-signers.")
@click.option("--no-simplify", is_flag=True,
              help="Keep the ONNX graph as exported: no constant folding or Conv+BatchNorm fusion before conversion.")
@click.option("--recipe", "recipe_file", type=click.Path(dir_okay=False),
              help="TOML recipe: [package] options and ordered [[transform]] steps (README: recipes); flags "
                   "given here override its [package] values.")
@click.option("--prune", metavar="channels=R|weights=R[,..]", multiple=True,
              help="Structured channel pruning (channels=RATIO, Torch-Pruning; criterion=, scope=, round_to=, "
                   "protect=) or "
                   "unstructured magnitude pruning (weights=RATIO). A PyTorch nn.Module source only "
                   "(file.py:callable or module:callable; not TorchScript or .pt2).")
@click.option("--low-rank", metavar="energy=F|rank=N", multiple=True,
              help="Low-rank factorization of Linear and Conv layers by kept energy or fixed rank.")
@click.option("--distill", is_flag=True,
              help="Fine-tune the transformed model by knowledge distillation from the source (or --teacher); "
                   "needs --train-data.")
@click.option("--teacher", metavar="MODEL", help="Distillation's teacher when it is not the source model.")
@click.option("--qat", is_flag=True, help="Quantization-aware training for INT8; needs --train-data.")
@click.option("--train-data", help=".npz of training inputs (+ optional `labels`), as --calib; or a "
              "module:callable or file.py:callable returning a PyTorch DataLoader.")
@click.option("--epochs", type=Count(min=1), help="Training epochs of --distill / --qat [default: distill 5, qat 3].")
@click.option("--lr", type=FiniteRange(),   # its range is the transform's option's
              help="Learning rate of --distill / --qat [default: distill 1e-3, qat 1e-4; an optimize study's best "
                   "gives its own].")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the training transforms (--distill, --qat, --prune ...); refused without one.")
@click.option("--keep-float", metavar="auto|LAYER,..",
              help="Mixed precision: keep these layers (or, with auto, the most sensitive ones measured on "
                   "--eval-data) in float while the rest is INT8.")
@click.option("--backend-option", "backend_option", multiple=True, metavar="KEY=VALUE",
              help="An option of the profile's backend without a flag of its own, e.g. workspace_mib=2048 or "
                   "int8_method=static (onnxruntime, tflite); `edgeopt profiles show PROFILE` lists them.")
@click.option("--threads", type=Count(min=1),
              help="Threads the bundle's runtime runs with by default [default: the profile's]; `bench --threads` "
                   "still overrides it for one run.")
@common
def package(out, model, profile, output, backend, precision, quantize, calib, eval_data, input_shapes, budgets, name,
            allow_mismatch, force, preset, subset_size, max_accuracy_drop, performance_hint, int8_io, sign_key,
            no_simplify, recipe_file, prune, low_rank, distill, teacher, qat, train_data, epochs, lr, seed,
            keep_float, backend_option, threads):
    """Convert and compress MODEL for a profile into a verified .edgepkg bundle.

    MODEL is an .onnx file, a PyTorch model (see `edgeopt inspect --help`), an OpenVINO IR
    .xml (with its .bin beside it) for an openvino profile such as intel-cpu, or a .tflite
    (packaged as it is) for a tflite profile such as raspberry-pi-5.
    """
    from . import api, recipe
    from .report.tables import key_values, package_rows, package_warnings, transform_table
    from .transform import reads_training_data
    options = dict(backend=backend, precision=precision, quantize=quantize, preset=preset, subset_size=subset_size,
                   max_accuracy_drop=max_accuracy_drop, performance_hint=performance_hint, int8_io=int8_io,
                   simplify=not no_simplify, seed=seed, keep_float=keep_float or "", threads=threads)
    steps = recipe.from_flags(_once(prune, "--prune"), _once(low_rank, "--low-rank"), distill, qat, epochs, lr)
    from_recipe, calib_unused, train_unused = set(), "", ""
    budgets = _budgets(budgets)
    work = scratch.folder("recipe")   # removed when package ends, or collected
    if recipe_file:
        options, steps, from_recipe = _with_recipe(recipe_file, options, steps)
        profile = _recipe_profile(recipe_file, profile, out)
        carried = recipe.bundle_budgets(recipe_file)
        if str(recipe_file).endswith(recipe.SUFFIX):   # a bundle's budgets are its whole set: one it dropped
            from .profiles import load_profile            # (KEY=none) is not the profile's again
            carried = {**{k: None for k in load_profile(profile).budgets}, **carried}
        budgets = {**carried, **budgets}   # --budget over a bundle's own
        other = recipe.other_source(recipe_file, model)
        if other:
            out.progress().status(other)
        shapes = {} if input_shapes else recipe.bundle_input_shapes(recipe_file, model)
        if shapes:
            input_shapes = tuple(f"{k}={','.join(map(str, v))}" for k, v in shapes.items())
            out.progress().status(f"input shapes {' '.join(input_shapes)}, as {recipe_file} records them")
        if calib is None:
            calib, calib_unused = _recipe_calibration(recipe_file, out)
            if calib is None and calib_unused and any(s.name == "qat" for s in steps):
                # QAT would calibrate from the training data instead, and its backend asks for nothing: another
                # model, exit 0 (a review)
                raise BadInput(calib_unused)
        if train_data is None and reads_training_data(steps):   # the file the bundle was trained on, unchanged
            train_data, train_unused = recipe.bundle_train_data(recipe_file)
            if train_data:
                out.progress().status(f"training data {train_data}, as {recipe_file} records it (sha256 unchanged)")
        if teacher is None and any(s.name == "distill" for s in steps):   # distilled from the source, unsaid
            teacher, why_not = recipe.bundle_teacher(recipe_file)
            if why_not:
                raise BadInput(why_not)
            if teacher:
                out.progress().status(f"teacher {teacher}, as {recipe_file} records it")
        if eval_data is None:   # the samples the bundle carries: a rebuild without them could not judge accuracy
            eval_data = recipe.bundle_eval_data(recipe_file, work.name)
            if eval_data:
                out.progress().status(f"eval data: the samples {recipe_file} carries")
    if click.get_current_context().get_parameter_source("seed") == click.core.ParameterSource.COMMANDLINE and \
            not steps:   # taken without a word, as --epochs and --lr are not (a random prune reads it too)
        raise BadInput("--seed seeds the model transforms (--distill, --qat, --prune ...); none was asked for")
    cli_backend_options = _backend_options(backend_option)
    from_recipe -= set(cli_backend_options)
    try:
        manifest = api.package(model, profile, output, calib=calib, eval_data=eval_data,
                               input_shapes=_shapes(input_shapes), budgets=budgets,
                               allow_mismatch=allow_mismatch, name=name, progress=out.progress(), sign_key=sign_key,
                               force=force, steps=steps, train_data=train_data, teacher=teacher,
                               backend_options=dict(options.pop("recipe_backend_options", {}), **cli_backend_options),
                               **options)
    except BadInput as e:
        for unused, flag in ((calib_unused, "--calib"), (train_unused, "--train-data")):
            if unused and flag in str(e):   # the rebuild needs the file the bundle recorded: say why not
                raise BadInput(f"{e}; {unused}", option=e.option) from None
        if e.option not in from_recipe:
            raise
        # the value came from the recipe, not a flag: name the file and its field, as the recipe's own checks do
        raise BadInput(f"{recipe_file}: package.{e.option}: {e}", option=e.option) from None
    finally:
        work.cleanup()
    tables = [transform_table(manifest["transforms"])] if manifest.get("transforms") else []
    out.emit(manifest, *tables, key_values("Packaged", package_rows(manifest)), *package_warnings(manifest))
    # a warning (INT8 no faster than float here) was lost under -q, where a CI runs it
    out.quiet_lines(note for note in manifest.get("notes", []) if note.startswith("warning:"))


def _recipe_calibration(path, out) -> tuple:
    """(the calibration file a bundle given as the recipe was quantized with, where it is unchanged (its sha256),
    else None; why not, or ""): a rebuild of an INT8 bundle needed --calib and never said which file."""
    from . import recipe

    file, why = recipe.bundle_calibration(path)
    if file:
        out.progress().status(f"calibration data {file}, as {path} records it (sha256 unchanged)")
    return file, why


def _backend_options(items) -> dict:
    """--backend-option KEY=VALUE pairs as {key: text}; the backend's Options convert and check each value."""
    from .options import parse_spec

    from .recipe import CORE_PACKAGE_KEYS

    out = {}
    for item in items:
        for key, value in parse_spec(item, "--backend-option").items():
            if key in out:   # in two flags: the last had won silently, as in one
                raise BadInput(f"--backend-option: {key} given twice ({out[key]!r} and {value!r}): give one value")
            out[key] = value
    for key in out:
        if key.replace("-", "_") in CORE_PACKAGE_KEYS:   # not "backend X has no --threads option": package has
            flag = RECIPE_PARAMETERS[key.replace("-", "_")].replace("_", "-")
            raise BadInput(f"--backend-option {key}: not a backend's option, but package's own --{flag}")
    return out


# package's options that a recipe's [package] table may set, by the click parameter that gives them.
RECIPE_PARAMETERS = {"backend": "backend", "precision": "precision", "quantize": "quantize", "preset": "preset",
                     "subset_size": "subset_size", "max_accuracy_drop": "max_accuracy_drop",
                     "performance_hint": "performance_hint", "int8_io": "int8_io", "simplify": "no_simplify",
                     "seed": "seed", "keep_float": "keep_float", "threads": "threads"}


def _recipe_profile(path, profile: str, out) -> str:
    """--profile when given; else the profile a bundle given as the recipe was packaged for (its recipe's options
    are that profile's backend's: rebuilt for generic, a Pi bundle's int8 I/O would silently be lost)."""
    from . import recipe
    from .profiles import load_profile

    packaged_for = recipe.bundle_profile(path)
    if packaged_for is None or click.get_current_context().get_parameter_source("profile") == \
            click.core.ParameterSource.COMMANDLINE:
        return profile
    try:
        load_profile(packaged_for)
    except BadInput:
        raise BadInput(f"{path}: packaged for profile {packaged_for!r}, which is not known here; give --profile "
                       "NAME or a .toml path") from None
    out.progress().status(f"profile {packaged_for}, as {path} was packaged (--profile to change it)")
    return packaged_for


def _with_recipe(path, options: dict, steps: list) -> tuple:
    """The recipe file's [package] values under the flags given on the command line; its transforms,
    unless transform flags were given too (two orders would be ambiguous). Returns (options, steps, the options
    whose value the recipe gave)."""
    from . import recipe

    recipe_options, recipe_steps = recipe.load(path)
    if steps and recipe_steps:
        raise BadInput(f"{path}: the recipe has [[transform]] steps; give transforms there or as flags, not both")
    source = click.get_current_context().get_parameter_source
    taken = set()
    for key, value in recipe_options.items():
        if key not in RECIPE_PARAMETERS:   # a backend's own option: --backend-option KEY=VALUE overrides it
            options.setdefault("recipe_backend_options", {})[key] = value
            taken.add(key)
        elif source(RECIPE_PARAMETERS[key]) != click.core.ParameterSource.COMMANDLINE:
            options[key] = value
            taken.add(key)
    return options, steps or recipe_steps, taken


@main.command()
@click.argument("bundle", type=click.Path())
@click.option("--device", "-d", default="local", show_default=True,
              help="`local`, an inventory name, an ~/.ssh/config alias, or user@host:port.")
@click.option("--allow-profile-mismatch", is_flag=True,
              help="Measure even where the inventory gives the device a profile of another backend.")
@loop_options
@sensing_options
@ssh_options
@common
def bench(out, bundle, device, allow_profile_mismatch, results_dir, threads, timeout, inventory, ssh, store_url,
          allowed_signers, **loop):
    """Measure BUNDLE on a device; saves the result JSON under --results-dir."""
    from . import api
    from .report.tables import bench_rows, key_values
    loop, sensing = _loop(loop)
    doc = api.bench(bundle, device, results_dir, threads, loop, timeout, out.progress(), inventory, ssh,
                    store_url, sensing, allowed_signers, allow_profile_mismatch)
    out.emit(doc, key_values("Benchmark", bench_rows(doc)))


@main.group()
def fleet():
    """Benchmark a bundle on many devices at once."""


@fleet.command("bench")
@click.argument("bundle", type=click.Path())
@click.option("--group", "-g", help="Inventory group (or one device) [default: all].")
@click.option("--parallel", "-j", type=Count(min=1), default=8, show_default=True,
              help="Devices measured at the same time.")
@click.option("--resume", is_flag=True,
              help="Continue the latest run of this bundle stopped before every device reported (else the latest): "
                   "only devices without an ok result there.")
@click.option("--budget", "budgets", multiple=True, metavar="KEY=VALUE",
              help="Budgets the run's results are judged by, over the bundle's (KEY=none drops one); recorded in "
                   "the run directory, so `check RUN_DIR` judges by them too.")
@click.option("--allow-profile-mismatch", is_flag=True,
              help="Measure even where the inventory gives the device a profile of another backend.")
@loop_options
@sensing_options
@ssh_options
@common
def fleet_bench(out, bundle, group, parallel, resume, budgets, allow_profile_mismatch, results_dir, threads, timeout,
                inventory, ssh, store_url, allowed_signers, **loop):
    """Measure BUNDLE on every device of an inventory group. Exit 3 if any device failed, 1 if any missed a budget."""
    from . import api
    from .report.tables import fleet_table, warning_lines
    if not inventory:
        raise click.UsageError("fleet bench needs --inventory FILE")
    loop, sensing = _loop(loop)
    report = api.fleet_bench(bundle, inventory, group, parallel, results_dir, threads, loop, timeout, resume,
                             ssh, store_url, _budgets(budgets), out.progress(), sensing, allowed_signers,
                             allow_profile_mismatch)
    from rich.markup import escape
    from rich.text import Text
    store_lines = [Text(f"not saved in full: {e}", style="red")
                   for e in report["store_errors"]] + [Text(f"replaced: {r}", style="yellow") for r in report["replaced"]]
    out.emit(report, fleet_table(report), f"results: {report['run_dir']}", *warning_lines(report["check"]["check"]),
             *store_lines, *(f"[yellow]warning[/] {escape(w)}" for w in report.get("warnings", [])))
    out.quiet_lines(f"warning: {w}" for w in report.get("warnings", []))
    out.quiet_lines(f"not saved in full: {e}" for e in report["store_errors"])   # exit 3 said nothing under -q
    out.failures((name, "", doc["error"]["message"]) for name, doc in report["documents"].items()
                 if doc.get("status") != "ok")
    # and each budget a device missed, as `check -q` says it: exit 1 said nothing
    out.quiet_lines(_report_failures([row for row in report["check"]["check"]["results"] if row.get("status") == "ok"]))
    code = report["check"]["check"]["exit_code"]
    return max(code, DeviceFailure.exit_code) if report["store_errors"] else code


@main.command()
@click.argument("model")
@click.option("--profile", "-p", default="generic", show_default=True, help="Hardware profile name or .toml path.")
@click.option("--device", "-d", "devices", multiple=True,
              help="Device to measure every candidate on (repeat for several; the worst decides) [default: local].")
@click.option("--group", "-g", help="Every device of this inventory group (instead of --device).")
@click.option("--budget", "budgets", multiple=True, metavar="KEY=VALUE",
              help="A budget every candidate must meet; KEY=0.5x: half the baseline (the untouched model) measured "
                   "in this study on the same devices, again right before each candidate (latency_p50_ms, "
                   "latency_p90_ms, peak_rss_mb, size_mb); KEY=none drops one of the profile's.")
@click.option("--baseline-once", is_flag=True,
              help="With KEY=Nx budgets: judge every candidate against the baseline's one run at the study's start "
                   "instead of measuring it again beside each candidate (half the device time; the device's drift "
                   "between runs then decides at the margin).")
@click.option("--max-accuracy-drop", type=FiniteRange(0, 1),
              help="Shorthand for --budget accuracy_drop=F (needs labelled --eval-data).")
@click.option("--objective",
              help="Figure minimised among the candidates that meet every budget. Default: the latency given "
                   "with --budget (a relative one first), else latency_p90_ms.")
@click.option("--trials", type=Count(min=1), default=20, show_default=True,
              help="Trials in the study, counting earlier runs and other workers.")
@click.option("--study", "study", default="edgeopt", show_default=True, help="Study name in the store.")
@click.option("--resume", is_flag=True, help="Continue the study (after a crash, Ctrl-C, or to add trials).")
@click.option("--sampler", type=click.Choice(["tpe", "gp", "random", "grid", "nsga2"]),
              help="tpe: Optuna's TPE; gp: a Gaussian process per budget and for the objective (needs torch), "
                   "the faster to a first configuration that meets every budget where only combined techniques "
                   "do; nsga2: NSGA-II. Each searches a --pareto front too.  [default: tpe; nsga2 with --pareto]")
@click.option("--pareto", "multi_objective", is_flag=True,
              help="Multi-objective: a Pareto front over latency, accuracy drop and size (and energy per "
                   "inference where every device reads the profile's power sensor, or with an energy_mj budget) "
                   "instead of one objective.")
@click.option("--space", "space_file", type=click.Path(dir_okay=False),
              help="TOML file narrowing the search space, e.g. quantize = [\"none\", \"int8\"] or backend = "
                   "[\"onnxruntime\"] (the profile's backends whose runtime the devices have are searched).")
@click.option("--no-screening", is_flag=True, help="Measure every candidate fully (no short screening run first).")
@click.option("--keep-bundles", is_flag=True,
              help="Keep every candidate's bundle in OUTPUT_DIR/STUDY/bundles. By default, once the study ends, "
                   "only the baseline's, INT8 by hand's, the chosen one's, the Pareto front's, those measured again "
                   "and the closest misses stay (--resume rebuilds another where it needs it).")
@click.option("--calib", type=click.Path(), help="Calibration .npz (INT8 candidates need it).")
@click.option("--eval-data", type=click.Path(), help="Labelled eval .npz: accuracy of every candidate on the device.")
@click.option("--train-data", help="Training data for the training transforms (distillation, QAT): an .npz, or a "
                                   "`file.py:callable` returning a DataLoader, as package takes it.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME=D,D,..", help="Fix an input's shape.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the sampler and of the training transforms (distillation's data order, QAT, ...): "
                   "another seed trains other models for the same configuration.")
@click.option("--output-dir", default="optimize", show_default=True, type=click.Path(file_okay=False),
              help="Where candidate bundles and the chosen STUDY-best.edgepkg are written.")
@click.option("--results-dir", default="results", show_default=True, type=click.Path(file_okay=False),
              help=RESULTS_DIR_HELP)
@click.option("--store", "store_url", help=STORE_HELP + " The study is kept in the same database.")
@click.option("--timeout", default=900.0, show_default=True,
              help="Give up on a device after this many seconds (at least 10).")
@ssh_options
@common
def optimize(out, model, profile, devices, group, budgets, baseline_once, max_accuracy_drop, objective, trials,
             study, resume, sampler, multi_objective, space_file, no_screening, keep_bundles, calib, eval_data,
             train_data, input_shapes, seed, output_dir, results_dir, store_url, timeout, inventory, ssh):
    """Search compression and conversion settings for MODEL, every candidate measured on the devices.

    \b
      edgeopt optimize model.onnx --budget latency_p90_ms=0.5x --max-accuracy-drop 0.01 \\
          --calib calib.npz --eval-data eval.npz --trials 20 --study mine
      edgeopt optimize net.py:build --input-shape input=1,3,32,32 --train-data train.npz ... \\
          --space space.toml          # prune = [false, true], "distill.epochs" = {low = 2, high = 8, step = 2}
      edgeopt optimize ... --study mine --resume     # the same flags again: continue after Ctrl-C

    MODEL: an ONNX file, or PyTorch (file.py:callable with --input-shape) for the transforms. Exit codes: 0 a
    configuration met every budget (its bundle is OUTPUT_DIR/STUDY-best.edgepkg), 1 none did (the closest miss per
    budget is shown; or the best met a relative budget beside its paired baseline but misses the absolute limit its
    bundle carries, which `check` applies: written, and shown "unconfirmed"), 2 bad input, 3 the device failed,
    130 interrupted, 143 terminated (SIGTERM; --resume continues either). In the table, * marks the chosen trial.
    """
    from . import api
    from .report.tables import optimize_lines, optimize_trials
    if devices and group:
        raise click.UsageError("give --device or --group, not both")
    from .budgets import parse_budget_args
    wanted, relative = parse_budget_args(budgets, relative=True)
    if baseline_once and not relative:
        raise click.UsageError("--baseline-once applies to relative budgets (--budget KEY=Nx); none was given")
    if max_accuracy_drop is not None:
        if "accuracy_drop" in wanted:   # the shorthand replaced the budget, looser or not
            given = "none" if wanted["accuracy_drop"] is None else f"{wanted['accuracy_drop']:g}"
            raise click.UsageError(f"--max-accuracy-drop {max_accuracy_drop:g} and --budget accuracy_drop={given}: "
                                   "give one")
        if not eval_data:   # as the flag typed, not the --budget it stands for
            raise BadInput(f"--max-accuracy-drop {max_accuracy_drop:g}: accuracy is measured on labelled eval data, "
                           "and no --eval-data was given")
        wanted["accuracy_drop"] = max_accuracy_drop
    try:
        outcome = api.optimize(model, profile, devices or ("local",), wanted, study, trials, sampler, group,
                               relative_budgets=relative, paired_baseline=not baseline_once,
                               progress=out.progress(), objective=objective, calib=calib, eval_data=eval_data,
                               train_data=train_data, input_shapes=_shapes(input_shapes), seed=seed,
                               results_dir=results_dir, store_url=store_url, inventory=inventory, ssh_options=ssh,
                               timeout=timeout, output_dir=output_dir, keep_bundles=keep_bundles,
                               space_file=space_file, resume=resume, screening=not no_screening,
                               multi_objective=multi_objective)
    except KeyboardInterrupt as e:   # the finished trials are in the study: say how to go on from them, on stderr
        raise KeyboardInterrupt(str(e) or f"the finished trials of study {study!r} are kept; the same command "
                                "with --resume continues it") from None                              # and in --json
    out.emit(outcome, optimize_trials(outcome), *optimize_lines(outcome))
    # a study cut short by its devices: exit 3 under -q said nothing, and a best beside the stop hid it
    out.quiet_lines([f"study {outcome['study']} stopped: {outcome['stopped']}"] if outcome.get("stopped") else [])
    if outcome["exit_code"] == 1:   # why, as `check -q` says it: exit 1 said nothing
        out.quiet_lines(_why_optimize_missed(outcome))
    elif outcome.get("best"):   # a best to rely on with care: its warnings, which --quiet keeps (a walkthrough)
        out.quiet_lines(_optimize_warnings(outcome))
    return outcome["exit_code"]


def _optimize_warnings(outcome: dict) -> list:
    """The warnings beside a best that met every budget: runs that disagree, a rebuilt bundle unlike the measured."""
    from .search.judging import best_warnings
    return ([f"warning: {w}" for w in best_warnings(outcome, outcome["best"])]
            + [f"warning: trial {n}'s bundle was rebuilt on this host and its files differ from those measured: its "
               "figures are not this bundle's" for n in outcome.get("rebuilt_differs", [])])


def _why_optimize_missed(outcome: dict) -> list:
    """No trial met every budget (the closest miss per budget), or the best's figure misses a limit its bundle
    carries: one line each."""
    from rich.text import Text
    from .report.tables import closest_lines
    from .search.judging import best_warnings
    best = outcome.get("best")
    return ([f"study {outcome['study']}: no trial met every budget"]
            + [Text.from_markup(line).plain for line in closest_lines(outcome)] if not best else   # rich markup
            [f"study {outcome['study']}: the best, trial {best['trial']}, is unconfirmed"]
            + best_warnings(outcome, best))


@main.group()
def device():
    """Devices: list an inventory, diagnose a device, clean up after edgeopt."""


@device.command("list")
@click.option("--group", "-g", help="Only the devices of this inventory group [default: all].")
@click.option("--inventory", "-i", type=click.Path(),
              help="Devices: edgeopt YAML, or any Ansible inventory (file, directory, plugin, script).")
@common
def device_list(out, group, inventory):
    """List the devices of an inventory (or one group of it); it connects to none."""
    from . import api
    from .report.tables import devices_table
    if not inventory:
        raise click.UsageError("device list needs --inventory FILE")
    items = api.devices(inventory, group)
    out.emit(items, devices_table(items), data=True)


@device.command("doctor")
@click.argument("name")
@ssh_options
@common
def device_doctor(out, name, inventory, ssh):
    """Say what device NAME lacks to run benchmarks (Python, numpy, its runtime) and how to install it."""
    from . import api
    from .report.tables import doctor_table
    report = api.device_doctor(name, inventory, ssh, out.progress())
    out.emit(report, doctor_table(report))
    out.failures((report["device"], f"{c['check']}: ", c["detail"]) for c in report["checks"] if not c["ok"])
    out.quiet_lines(f"warning: {w}" for w in report["warnings"])   # the table shows it in the connection row
    return 0 if report["ok"] else 2 if report["bad_input"] else 3


@device.command("clean")
@click.argument("name")
@ssh_options
@common
def device_clean(out, name, inventory, ssh):
    """Remove what edgeopt left on device NAME: cached agents and bundles, stale run directories."""
    from . import api
    from rich.markup import escape
    report = api.device_clean(name, inventory, ssh)
    out.emit(report, f"{name}: freed {report['freed_bytes'] / 1048576:.1f} MiB",
             *(f"[yellow]warning[/] {escape(w)}" for w in report["warnings"]))
    out.quiet_lines(f"warning: {w}" for w in report["warnings"])


@main.command()
@click.option("--device", "-d", help="Only this device.")
@click.option("--bundle", "-b", help="Only this bundle name.")
@click.option("--limit", type=Count(min=1), default=50, show_default=True,
              help="Show at most this many results.")
@click.option("--results-dir", default="results", show_default=True, type=click.Path(file_okay=False),
              help="Where the default store (edgeopt.db) is.")
@click.option("--store", "store_url", help=STORE_HELP)
@click.option("--add", "add", multiple=True, type=click.Path(), metavar="RESULTS",
              help="First add these result files, or folders of them (results/history holds every run), to the "
                   "store, each once: results from before it existed, a CI artifact's, a teammate's for a shared "
                   "store, or one whose run was killed before its row was written. With --json: {store, added, "
                   "held, unreadable, warnings, history}.")
@click.option("--since", metavar="AGE", help="Only the results measured since then: an age (7d, 2w) or a date "
                                                 "(2026-12-01), UTC where it names no zone.")
@click.option("--forget-older-than", "older_than", metavar="AGE",
              help="Instead of listing, forget the results measured before this (an age, 180d or 26w, or a date, "
                   "2026-06-01): their store rows and their files under results/history and results/fleet. The "
                   "newest --keep-last good results of each bundle on each device and host are kept, and so is "
                   "each bundle's latest file at the top of the results folder. --device and --bundle narrow it.")
@click.option("--keep-last", type=Count(min=1), metavar="N",
              help="With --forget-older-than: keep this many newest good results of each bundle on each device, "
                   "host and hardware whatever their age [default: 21: the regression gate's baseline and the 20 "
                   "runs of spread it reads, and the candidate].")
@click.option("--dry-run", is_flag=True, help="With --forget-older-than: say what would be forgotten, remove nothing.")
@common
def history(out, device, bundle, limit, results_dir, store_url, add, since, older_than, keep_last, dry_run):
    """Past results from the results store, newest first; with --forget-older-than, old ones forgotten.

    Exit 0, or 2 where a file given to --add cannot be read (the others are added), or a file to forget cannot be
    removed (it is kept, with its row)."""
    from . import api
    from .report.tables import history_table
    if older_than is not None:
        given = [flag for flag, value in (("--add", add), ("--since", since)) if value] + ["--limit"] * (
            click.get_current_context().get_parameter_source("limit") != click.core.ParameterSource.DEFAULT)
        if given:
            raise click.UsageError(f"--forget-older-than and {given[0]}: give them in two commands")
        return _forget(out, older_than, keep_last, results_dir, store_url, dry_run, device, bundle)
    if keep_last is not None or dry_run:
        raise click.UsageError("--keep-last and --dry-run go with --forget-older-than")
    added = api.add_to_store(list(add), results_dir, store_url) if add else None
    rows = api.history(results_dir, store_url, device, bundle, limit, since)
    filters = " and ".join(f"{what} {name!r}" for what, name in (("bundle", bundle), ("device", device),
                                                                  ("measured since", since)) if name)
    said = [] if added is None else [f"added {len(added['added'])} result(s) to {added['store']} ({len(added['held'])} "
                                     "it held already)"]
    if len(rows) == limit:   # "50 shown" of 1,781 was said nowhere (a scale walkthrough)
        total = api.history_count(results_dir, store_url, device, bundle, since)
        if total > limit:
            said.append(f"the newest {limit} of {total} results shown: --limit N shows more")
    out.emit(dict(added, history=rows) if added else rows,
             history_table(rows, f"no results for {filters}" if filters else "no results in the store",
                           whole=out.quiet), *said, data=True)
    for message in (added or {}).get("unreadable", []):
        click.echo(f"edgeopt: error: {message}", err=True)
    for message in (added or {}).get("warnings", []):
        click.echo(f"edgeopt: warning: {message}", err=True)
    return 2 if added and added["unreadable"] else 0


def _forget(out, older_than, keep_last, results_dir, store_url, dry_run, device, bundle) -> int:
    from . import api
    from rich.markup import escape
    report = api.forget_results(older_than, keep_last, results_dir, store_url, dry_run, out.progress(),
                                device=device, bundle=bundle)
    when = report["before"][:16].replace("T", " ") + " UTC"
    kept = report["kept"]
    counts = ", ".join(f"{n} {what}" for n, what in (
        (kept["recent"], "measured since"),
        (kept["newest_good"], f"among the newest {report['keep_last']} good of their bundle, device, host and "
                              "hardware"),
        (kept["study"], "an optimize study names"), (kept["run"] + kept["held"], "with their fleet run")) if n)
    lines = [f"{'would forget' if dry_run else 'forgot'} {report['forgotten']} result(s) measured before {when} "
             f"({report['rows']} store row(s), {report['files']} file(s), {report['bytes'] / 1048576:.1f} MiB)",
             f"kept: {counts + '; ' if counts else ''}each bundle's latest file"]
    left = [f"{len(report['left_unreadable'])} file(s) that cannot be read as results"] * bool(
        report["left_unreadable"]) + [f"{report['left_undated']} result(s) that record no time"] * bool(
        report["left_undated"]) + [f"fleet run {r}: another process holds it" for r in report["left_held_runs"]]
    if report["not_removed"]:
        left.append(f"{report['not_removed']} result(s) whose files could not be removed (their rows too)")
    errors = report["errors"][:ERROR_LINES] + [f"and {len(report['errors']) - ERROR_LINES} more"] * (
        len(report["errors"]) > ERROR_LINES)
    out.emit(report, *lines, *(f"note: {escape(n)}" for n in report["notes"]),
             *(f"left: {escape(x)}" for x in left), *(f"[yellow]warning[/] {escape(e)}" for e in errors))
    out.quiet_lines([*lines, *report["notes"]] if dry_run else [])   # the dry run's answer is its counts
    out.quiet_lines(f"warning: {e}" for e in errors)
    return BadInput.exit_code if report["errors"] else 0


ERROR_LINES = 20   # files forgetting could not remove, listed (639 lines for one read-only folder)


def baseline_options(fn):
    """The regression gate's flags, the same for check and compare."""
    fn = click.option("--store", "store_url", help="Results store for --baseline store [default: $EDGEOPT_STORE, "
                      "else edgeopt.db in --results-dir].")(fn)
    fn = click.option("--results-dir", type=click.Path(file_okay=False),
                      help="Where the default results store is (for --baseline store) [default: the results "
                           "folder that holds the result files, as `report` finds it, else ./results].")(fn)
    return gate_options(fn)


def gate_options(fn):
    """--baseline and --min-effect: report's too, whose --store is its history's and the gate's."""
    fn = click.option("--min-effect", "effect", type=FiniteRange(0, 10, max_open=True), default=0.05,
                      show_default=True, help="Smallest slowdown that counts, as a fraction (0.05 = 5%). A slowdown must "
                           "also clear the baseline model's own spread between runs, where five are known.")(fn)
    return click.option("--baseline", "baseline", multiple=True, metavar="BASE",
                        help="Baseline result file or run directory (repeatable), or `store`: the last good "
                             "result of the same bundle on the same device, host and hardware (`store:hardware`: "
                             "of any host with the same hardware, for CI runners named anew each job). Tests each "
                             "device's latency for a significant change.")(fn)


@main.command()
@click.argument("results", nargs=-1, required=True, type=click.Path())
@click.option("--budget", "budgets", multiple=True, metavar="KEY=VALUE",
              help=f"One of {', '.join(BUDGET_KINDS)} (overrides bundle/profile budgets; KEY=none drops one).")
@click.option("--profile", help="Also apply this profile's default budgets (each adds a budget or tightens the "
                                "bundle's own; --budget sets one outright).")
@click.option("--junit", type=click.Path(dir_okay=False), help="Write a JUnit XML report for CI.")
@baseline_options
@common
def check(out, results, budgets, profile, junit, baseline, effect, results_dir, store_url):
    """Check result files (or fleet run directories) against budgets and, with --baseline, for a
    latency regression.

    Exit 0 all hold, 1 any fails, is unmeasured or is significantly slower, 2 a result has nothing to check
    (no budget from its bundle, --budget or --profile, and no --baseline) or a result file cannot be read (the
    others are checked beside it), 3 a device produced no result. A
    regression verdict "inconclusive" (a change beyond --min-effect that the measurements cannot confirm) exits 0
    with its reason printed, and is a skipped test case in --junit.
    """
    from rich.markup import escape

    from . import api
    from .atomic import check_writable
    from .report.tables import check_table, check_tally, regression_lines, regression_table, warning_lines
    if junit:
        from .bundle import refuse_to_overwrite
        refuse_to_overwrite(junit, "the JUnit report", results)
        check_writable(junit, "the JUnit report")
    try:
        report = api.check(list(results), _budgets(budgets), profile, list(baseline), effect, store_url,
                           results_dir, require_budgets=True)
    except BadInput as e:   # no JUnit file read as "no test results" in a CI system's report step
        if junit:
            from .report.junit import write_refusal
            try:
                write_refusal(first_line(e), junit, "store unreachable" if e.exit_code == 3 else "bad input")
            except EdgeoptError:   # a full disk: the refusal is the answer, not the file's failure
                pass
        raise
    if junit:
        from .report.junit import write
        write(report, junit)
    tables = [regression_table(report["regressions"]), *regression_lines(report["regressions"])] if baseline else []
    # a pass that tested nothing (--baseline with no baseline yet): said, under -q too
    nothing = [f"warning: {report['headline']}"] if not report["checked"] and not report["exit_code"] else []
    out.emit(report, check_table(report), *tables, *warning_lines(report), *(escape(n) for n in nothing),
             escape(check_tally(report)))
    _say_unreadable(report["results"])
    if report["exit_code"]:   # a CI log shows why it failed, not only that
        out.quiet_lines(_report_failures(report["results"]) + _slower_lines(report.get("regressions") or []))
    # a gate that decided nothing for a result, its budgets checked: -q said nothing of "not tested" (a walkthrough)
    out.quiet_lines(nothing + [f"warning: {r['bundle']}@{r['device']}: regression gate {r['verdict']}: {r['reason']}"
                               for r in report.get("regressions") or [] if r.get("verdict") == "inconclusive"
                               or r.get("verdict") == "not tested" and not nothing])
    return report["exit_code"]


def _say_unreadable(entries: list) -> None:
    """Each result file that cannot be read, as bad input is said (on stderr, under --quiet and --json too): the
    table beside it holds the others' verdicts."""
    from .results import UNREADABLE
    for e in entries:
        if e.get("status") == UNREADABLE:
            click.echo(f"edgeopt: error: {e['error']}", err=True)


def _slower_lines(regressions: list) -> list:
    """One line per result the gate found slower, with the quantiles that moved beyond the effect (a p90 that
    grew 48 % was quoted as its p50's +2 %)."""
    from .regression import QUANTILES, SLOWER
    lines = []
    for r in (r for r in regressions if r.get("verdict") == SLOWER):
        moved = [name for name, _ in QUANTILES if r[name]["direction"] == SLOWER] or ["p50"]
        lines.append(f"{r['bundle']}@{r['device']}: significantly slower than {r['baseline']['result']} ("
                     + ", ".join(f"{name} {r[name]['ratio'] - 1:+.1%}" for name in moved) + ")")
    return lines


@main.command()
@click.argument("results", nargs=-1, required=True, type=click.Path())
@click.option("--budget", "budgets", multiple=True, metavar="KEY=VALUE",
              help="Judge every result by this budget too, e.g. latency_p90_ms=5; it overrides the bundle's own "
                   "for that key (KEY=none drops it), as `check --budget` does.")
@baseline_options
@common
def compare(out, results, budgets, baseline, effect, results_dir, store_url):
    """Compare result files side by side: device, runtime, latency percentiles, memory, accuracy, verdicts;
    with --baseline, each device's latency change and whether it is significant. Exit code as `check`: 1 where a
    result misses or does not measure a budget, or is significantly slower; 3 where a device failed; but a result
    with no budget passes (0), where `check` refuses it (2): comparing is also for looking. 2 where a result file
    cannot be read (the others are shown)."""
    from . import api
    from rich.markup import escape

    from .report.tables import compare_table, compare_view, regression_lines, regression_table, warning_lines
    report = api.compare(list(results), _budgets(budgets), list(baseline), effect, store_url, results_dir)
    tables = [regression_table(report["regressions"]), *regression_lines(report["regressions"])] if baseline else []
    shown = compare_table(report["rows"], every_column=True) if out.quiet else compare_view(report["rows"])
    out.emit(report, shown, *tables, *warning_lines(report["check"]),
             *(f"[yellow]note[/] {escape(n)}" for n in report["notes"]), data=True)
    _say_unreadable(report["check"]["results"])
    return report["check"]["exit_code"]


# report's formats, and the output names that ask for each where --format is not given
REPORT_FORMATS = {"html": (".html", ".htm"), "markdown": (".md", ".markdown"), "csv": (".csv",)}


def _refuse_a_foreign_default_report(path: str) -> None:
    """`report` without -o writes ./report.html: one that edgeopt did not write (a page of the user's) is not
    replaced unasked, where it was overwritten without a word (a user walkthrough)."""
    from .report.html import GENERATOR
    import stat
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):   # a pipe would block the read; a folder: the write says
            return
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
    except OSError:   # none there, or unreadable: the write says what is wrong with it
        return
    if GENERATOR not in head and "by edgeopt" not in head:   # an earlier version's report has no generator tag
        raise BadInput(f"{path} exists and is not an edgeopt report: it is not replaced unasked; give -o FILE "
                       f"(-o {path} replaces it)")


def _report_format(output, given: str | None) -> str:
    """The format an --output name asks for (report.md: Markdown), or --format's where given; html without
    either. Any other name is refused (`-o summary.txt` wrote HTML into a file its name calls text), and so is a
    name that asks for another format than --format's (`--format csv -o x.html` wrote CSV into x.html)."""
    if output is None:
        return given or "html"
    suffix = pathlib.PurePath(output).suffix.lower()
    fmt = next((fmt for fmt, suffixes in REPORT_FORMATS.items() if suffix in suffixes), None)
    if given is not None and fmt not in (None, given):
        raise BadInput(f"--output {output}: its suffix {suffix} says {fmt}, --format says {given}; "
                       "rename it or change --format")
    if given is not None:
        return given
    if fmt is None:
        accepted = ", ".join(f"{'/'.join(suffixes)} {fmt}" for fmt, suffixes in REPORT_FORMATS.items())
        what = f"{suffix} is not a report's suffix" if suffix else "no suffix tells the format"
        raise BadInput(f"--output {output}: {what} ({accepted}); rename it or give --format")
    return fmt


@main.command()
@click.argument("results", nargs=-1, type=click.Path())
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="Write here [default: report.html for html; stdout for markdown and csv].")
@click.option("--study", help="An `optimize` study in the store: its trials and Pareto front (alone, it reports the "
                              "study's baseline and best results, from this host's files or else the store, and exits "
                              "0 where its chosen configuration's results meet every budget, 1 where no trial did or "
                              "they are neither here nor in the store, 3 where they hold no result); as CSV, one row "
                              "per trial.")
@click.option("--format", "fmt", type=click.Choice(list(REPORT_FORMATS)),
              help="[default: from the --output name (.html, .md, .csv; any other is refused), else html]")
@click.option("--budget", "budgets", multiple=True, metavar="KEY=VALUE", help="Budgets to judge against (as check; KEY=none drops one).")
@click.option("--store", "store_url", help="Results store URL for the history [default: $EDGEOPT_STORE, else "
                                          "edgeopt.db beside the results].")
@click.option("--no-history", is_flag=True, help="Leave out the history trends.")
@click.option("--title", default="edgeopt report", show_default=True, help="The report's title.")
@gate_options
@common
def report(out, results, output, fmt, study, budgets, store_url, no_history, title, baseline, effect):
    """One report of result files or fleet run directories: a self-contained HTML page (charts inline, opens
    offline), Markdown for a pull-request comment, or CSV. With --baseline, the regression gate's table too (as
    `check --baseline`; `--baseline store` reads --store). Exit code as `check`: 0, 1 or 3, or 2 where a result
    file cannot be read (the report holds the others); a result with no budget passes, said in the report, where
    `check` refuses it (2)."""
    from . import api
    fmt = _report_format(output, fmt)
    if output is None and fmt == "html":
        output = "report.html"
        _refuse_a_foreign_default_report(output)
    if not results and not study:
        raise click.UsageError("give result files or run directories, or --study NAME")
    doc = api.report(list(results), output, fmt, _budgets(budgets), store_url, not no_history, title, study,
                     list(baseline), effect)
    if doc["store_error"] and not out.as_json:   # on stderr under --quiet too: the report lacks what was asked
        click.echo(f"edgeopt: warning: the report has no history: {doc['store_error']}", err=True)
    if output is None and not out.as_json:   # the text on stdout is the answer, under --quiet too (as compare's table)
        out.text(doc["text"])
    summary = {k: v for k, v in doc.items() if k not in ("text", "rows") or (k == "text" and output is None)}
    from .report.rows import machine_rows
    summary["summary"] = machine_rows(doc["rows"]["summary"])   # each device by its own name
    if baseline:   # --json said exit 1 with no word of the gate that gave it (a review)
        summary["regressions"] = doc["rows"]["regressions"]
    if doc["rows"]["study"]:   # its trials, choice and verdict: --json held the result rows alone (a walkthrough)
        summary.update(study=doc["rows"]["study"], headline=doc["rows"]["headline"])
    count = f"{doc['results']} result{'' if doc['results'] == 1 else 's'}"
    out.emit(summary, *([f"{fmt} report: {output} ({doc['bytes'] / 1024:.1f} KiB, {count})"] if output else []))
    _say_unreadable(doc["rows"]["summary"])
    if doc["exit_code"] and not out.as_json:   # a CI log shows why, not only the page's name, under -q too
        for line in (_report_failures(doc["rows"]["summary"]) + _slower_lines(doc["rows"]["regressions"])
                     or [doc["rows"]["headline"]] * (doc["exit_code"] != 2)):   # a study's own verdict
            click.echo(f"edgeopt: {line}", err=True)
    return doc["exit_code"]


def _report_failures(summary: list) -> list:
    """One line per result that fails the report's exit code: its device's error, or each budget it misses."""
    from .results import UNREADABLE
    lines = []
    for row in summary:
        who = f"{row['bundle']}@{row['device']}"
        if row.get("status") == UNREADABLE:   # said as an error (_say_unreadable)
            continue
        if row.get("status") != "ok":
            lines.append(f"{who}: no result: {row.get('error') or 'the device failed'}")
            continue
        for b in row.get("budgets") or []:
            if b["status"] == "fail":
                unit = f" {b['unit']}" if b["unit"] else ""
                lines.append(f"{who}: {b['budget']} {b['measured']:.6g}{unit} misses {b['comparison']} "
                             f"{b['limit']:g}{unit}")
            elif b["status"] == "unmeasured":
                lines.append(f"{who}: {b['budget']} not measured: {b['reason']}")
    return lines


@main.command()
@click.option("--output-dir", default="demo-out", show_default=True, type=click.Path(file_okay=False),
              help="Where the three bundles go, and their results under results/.")
@click.option("--device", "-d", default="local", show_default=True,
              help="Where to measure: `local`, an inventory name, an ~/.ssh/config alias, or user@host:port.")
@ssh_options
@common
def demo(out, output_dir, device, inventory, ssh):
    """Package the shipped digits CNN as FP32, FP16 and INT8 for `generic`, measure each, compare."""
    from . import api
    from .report.tables import check_table, compare_view, warning_lines
    report = api.demo(output_dir, device, progress=out.progress(), inventory=inventory, ssh_options=ssh)
    out.emit(report, compare_view(report["rows"], "digits_cnn on " + device), check_table(report["check"]),
             *warning_lines(report["check"]),
             f"bundles: {report['bundles_dir']}/*.edgepkg   results: {report['results_dir']}/*.json")
    return report["check"]["exit_code"]


@main.group()
def agent():
    """The device agent: build its zipapp, or probe a device with it."""


@agent.command("build")
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="Where to write the .pyz [default: the cache, ~/.cache/edgeopt/agent or $EDGEOPT_CACHE/agent].")
@click.option("--force", is_flag=True, help="Replace an existing -o file that is not an edgeopt agent.")
@common
def agent_build(out, output, force):
    """Build the agent as one zipapp file (runs with Python 3.8+, numpy and a runtime)."""
    from .agent_zipapp import build, is_agent
    if output and pathlib.Path(output).is_file() and not force and not is_agent(output):   # a pipe: written to
        raise BadInput(f"{output}: exists and is not an edgeopt agent zipapp; refusing to overwrite it (pass --force "
                       "to replace it, or -o another file)")
    path = build(output)
    out.emit({"agent": str(path)}, f"agent zipapp: {path}")


@agent.command("probe")
@click.option("--device", "-d", default="local", show_default=True,
              help="`local`, an inventory name, an ~/.ssh/config alias, or user@host:port.")
@ssh_options
@common
def agent_probe(out, device, inventory, ssh):
    """Run the agent's probe on a device: CPU, memory, OS, Python, runtimes."""
    from . import api
    from .report.tables import key_values, probe_rows
    facts = api.agent_probe(device, inventory, ssh, out.progress())
    out.emit(facts, key_values(f"Device {device}", probe_rows(facts)), data=True)
