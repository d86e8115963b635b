"""Progress lines on stderr. Hosts recognise the `[agent] ` prefix and show them as status;
stdout stays reserved for the one result document."""
import sys


def report(phase, message):
    sys.stderr.write("[agent] %s: %s\n" % (phase, message))
    sys.stderr.flush()
