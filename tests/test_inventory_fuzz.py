"""Every inventory reader is total: a generated inventory gives a result the oracle agrees with, or one
line (BadInput, exit 2); never a traceback, never a silent misread. Oracles and generators: inventory_gen.py.
The Ansible cases run the real ansible-inventory (~0.4 s each), so they take fewer examples here;
benchmarks/bench_inventory_fuzz.py runs hundreds of each and prints the figures."""
import atexit
import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inventory_gen as gen
from edgeopt import inventory_ansible

ANSIBLE_EXAMPLES = int(os.environ.get("INVENTORY_FUZZ_ANSIBLE_EXAMPLES", "10"))
needs_ansible = pytest.mark.skipif(inventory_ansible.find_executable() is None,
                                   reason="ansible-core not installed (pip install 'edgeopt[ansible]')")
HANDLED = ("accepted", "refused")
TMP = tempfile.mkdtemp(prefix="edgeopt-inv-fuzz-")   # one directory, rewritten per example: cheap
atexit.register(shutil.rmtree, TMP, ignore_errors=True)   # each run left one in /tmp
FAST = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(max_examples=300, **FAST)
@given(gen.own_documents())
def test_own_yaml_documents_agree_with_the_schema(doc):
    assert gen.check_own(doc, TMP) in HANDLED


YAML_TOKENS = st.sampled_from(["devices:", "defaults:", "groups:", " pi:", "  host: x", "  port: 22", "{", "}",
                               "[", "]", "- a", "&a", "*a", "<<: *a", "!!python/object:os.system", "? x", "%YAML 1.1",
                               "---", "\t", "pi: {host: x}", "pi: {host: y}", "2001-01-01: 1", "'", ":", "\x00"])


# Texts that start as edgeopt's format: the own reader must answer them (anything else goes to Ansible).
RAW_OWN_TEXT = st.lists(YAML_TOKENS, max_size=8).map(lambda tokens: "\n".join(["devices:"] + tokens))


@settings(max_examples=200, **FAST)
@given(RAW_OWN_TEXT)
def test_own_yaml_raw_text_never_tracebacks(text):
    assert gen.check_own(None, TMP, text=text) in HANDLED


@pytest.mark.slow
@needs_ansible
@settings(max_examples=ANSIBLE_EXAMPLES, **FAST)
@given(gen.ini_texts())
def test_ansible_ini_matches_ansible_inventory(text):
    with tempfile.TemporaryDirectory() as tmp:
        assert gen.check_ansible(text, tmp, "hosts") in HANDLED


@pytest.mark.slow
@needs_ansible
@settings(max_examples=ANSIBLE_EXAMPLES, **FAST)
@given(gen.ansible_yaml_docs())
def test_ansible_yaml_matches_ansible_inventory(doc):
    with tempfile.TemporaryDirectory() as tmp:
        assert gen.check_ansible(gen.dump_yaml(doc), tmp, "hosts.yml") in HANDLED


@pytest.mark.slow
@needs_ansible
@settings(max_examples=ANSIBLE_EXAMPLES, **FAST)
@given(gen.ini_texts_plain())
def test_plain_ansible_ini_is_accepted_as_ansible_reads_it(text):
    with tempfile.TemporaryDirectory() as tmp:
        assert gen.check_ansible(text, tmp, "hosts") in HANDLED
