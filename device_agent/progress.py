"""Progress lines on stderr. Hosts recognise the `[agent] ` prefix and show them as status;
stdout stays reserved for the one result document."""
import sys


def report(phase, message):
    sys.stderr.write("[agent] %s: %s\n" % (phase, message))
    sys.stderr.flush()


HEARTBEAT_SECONDS = 2.0
# What the agent's program (cli.run) does once the host that reads its stderr is gone (a write fails: the session's
# pipe is closed): end the agent through its finally blocks. None in-process (tests, the host's own calls).
on_host_gone = None


class Heartbeat(object):
    """A line on stderr every few seconds while a long step runs, so the host can tell a
    working device from a frozen one or a dead link."""

    def __init__(self, interval=HEARTBEAT_SECONDS):
        import threading
        self.interval, self.stop_event = interval, threading.Event()
        self.thread = threading.Thread(target=self._beat, name="heartbeat")
        self.thread.daemon = True

    def _beat(self):
        while True:  # the first beat at once: the host is counting from the moment it started us
            try:
                sys.stderr.write("[agent-heartbeat]\n")
                sys.stderr.flush()
            except (OSError, ValueError):   # EPIPE: the host is gone; an agent waiting for the lock waited on
                if on_host_gone is not None:   # for nobody, then took the device and measured (a walkthrough)
                    on_host_gone()
                return
            if self.stop_event.wait(self.interval):
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join()
        return False
