"""Generated inventories through every reader: how many were handled, how many ended in a traceback,
how many were accepted wrongly (issue 11). Same generators and oracles as tests/test_inventory_fuzz.py.

    PYTHONPATH=. python benchmarks/bench_inventory_fuzz.py [N [KIND...]]   # N examples per kind (default 200)

KIND: own_yaml, own_yaml_raw_text, ansible_ini, ansible_yaml (the default four), ansible_ini_plain (mostly
well-formed INI, so that most examples are accepted and compared with Ansible's listing).

Prints one JSON document: per kind, {tried, handled (= accepted + refused in one line), traceback, wrong}. The Ansible kinds run the
real ansible-inventory once per example (about 0.4 s each).
"""
import argparse
import collections
import json
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))

from hypothesis import HealthCheck, given, settings  # noqa: E402

import inventory_gen as gen  # noqa: E402
from test_inventory_fuzz import RAW_OWN_TEXT  # noqa: E402


def count(kind, strategy, check, n, counts):
    @settings(max_examples=n, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(example):
        counts[kind][check(example)] += 1
    run()


def main(n, kinds):
    with tempfile.TemporaryDirectory(prefix="edgeopt-inv-bench-") as tmp:   # mkdtemp's folder was left behind
        _main(n, kinds, tmp)


def _main(n, kinds, tmp):
    counts = collections.defaultdict(collections.Counter)
    every = {"own_yaml": (gen.own_documents(), lambda d: gen.check_own(d, tmp)),
             "own_yaml_raw_text": (RAW_OWN_TEXT, lambda t: gen.check_own(None, tmp, text=t)),
             "ansible_ini": (gen.ini_texts(), lambda t: gen.check_ansible(t, tmp, "hosts")),
             "ansible_yaml": (gen.ansible_yaml_docs(), lambda d: gen.check_ansible(gen.dump_yaml(d), tmp, "hosts.yml")),
             "ansible_ini_plain": (gen.ini_texts_plain(), lambda t: gen.check_ansible(t, tmp, "hosts"))}
    for kind in kinds or [k for k in every if k != "ansible_ini_plain"]:
        count(kind, *every[kind], n, counts)
    report = {kind: {"tried": sum(c.values()), "handled": c["accepted"] + c["refused"], "accepted": c["accepted"],
                     "refused": c["refused"], "traceback": c["traceback"], "wrong": c["wrong"]}
              for kind, c in counts.items()}
    report["total"] = {k: sum(r[k] for r in report.values()) for k in next(iter(report.values()))}
    print(json.dumps(report, indent=1))


KINDS = ("own_yaml", "own_yaml_raw_text", "ansible_ini", "ansible_yaml", "ansible_ini_plain")

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", nargs="?", type=int, default=200, help="examples per kind [200]")
    parser.add_argument("kinds", nargs="*", metavar="KIND", help=f"any of {', '.join(KINDS)}")
    args = parser.parse_args()
    if set(args.kinds) - set(KINDS):   # not choices=: argparse checks an empty KIND list against them too
        parser.error(f"unknown KIND {', '.join(sorted(set(args.kinds) - set(KINDS)))}; any of {', '.join(KINDS)}")
    main(args.n, args.kinds)
