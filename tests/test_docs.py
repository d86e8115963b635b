"""The README is part of the product: its commands must exist and its commands must run."""
import pathlib
import re
import shlex

import click

from edgeopt.cli import main

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _command_path(words):
    cmd, path = main, []
    for word in words:
        if not isinstance(cmd, click.Group) or word not in cmd.commands:
            break
        cmd = cmd.commands[word]
        path.append(word)
    return cmd, path


def test_every_edgeopt_command_in_the_readme_exists_with_its_options():
    lines = [l.split("#")[0].strip().removeprefix("$ ") for l in README.replace("\\\n", " ").splitlines()]
    commands = [l for l in lines if l.startswith("edgeopt ")]
    assert len(commands) >= 6
    for line in commands:
        words = shlex.split(line)[1:]
        cmd, path = _command_path(words)
        assert not isinstance(cmd, click.Group), f"README names an unknown verb: {line}"
        known = {opt for p in cmd.params for opt in p.opts}
        for word in words:
            if word.startswith("-") and not word[1:].isdigit():
                assert word.split("=")[0] in known, f"README uses unknown option {word} in: {line}"


def test_the_two_commands_are_in_the_readme_and_ci_runs_the_test_one():
    assert "make demo" in README and "make test" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)
