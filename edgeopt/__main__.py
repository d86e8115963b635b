"""`python -m edgeopt`, and the `edgeopt` command (run)."""
import os
import sys

INTERRUPTED_EXITS = (129, 130, 143)   # SIGHUP, Ctrl-C, SIGTERM: edgeopt.cli's own


def run():
    """The CLI, with a Ctrl-C while its modules load said in one line (it was a traceback through an import: no
    handler exists that early; a walkthrough), and an interrupted run's exit code kept: CPython's `-m` turns any
    exit into death by SIGINT once some exec'd code (a dataclass made during a lazy import) raised
    KeyboardInterrupt, so SIGTERM's 143 read as 130."""
    try:
        from edgeopt.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("edgeopt: interrupted\n")
        sys.exit(130)
    try:
        main()
    except SystemExit as e:
        if e.code not in INTERRUPTED_EXITS:
            raise
        for stream in (sys.stdout, sys.stderr):   # what the run said is out before the process ends
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(e.code)


if __name__ == "__main__":
    run()
