"""edgeopt/errors.py: first_line, the one helper that makes a library's message the line a one-line error quotes
(ir, data, store, NNCF and LiteRT conversion errors use it)."""
from hypothesis import given, strategies as st

from edgeopt.errors import first_line


def test_the_first_non_blank_line_stripped():
    openvino = RuntimeError("\n  Exception from src/inference/src/core.cpp:99:\n  [ NETWORK_NOT_READ ] bad xml\n")
    # its first line a heading (ending in a colon): the reason on the next line is kept with it
    assert first_line(openvino) == "Exception from src/inference/src/core.cpp:99: [ NETWORK_NOT_READ ] bad xml"


def test_an_error_without_a_message_is_named_by_its_type():
    assert first_line(KeyError()) == "KeyError"
    assert first_line(ValueError(" \n\t\n")) == "ValueError"
    assert first_line(KeyboardInterrupt()) == "KeyboardInterrupt"   # any BaseException


def test_text_stands_for_the_message_where_another_one_says_it():
    """SQLAlchemy's error wraps the driver's; a converter's log holds what its empty error did not say."""
    assert first_line(OSError("wrapper [SQL: ...]"), "\n no such table: results\n[SQL: SELECT 1]") == \
        "no such table: results"
    assert first_line(RuntimeError(), "") == "RuntimeError"


@given(st.text())
def test_it_is_always_one_stripped_line_of_the_message_or_the_type_name(text):
    line = first_line(ValueError(text))
    lines = [candidate.strip() for candidate in text.splitlines() if candidate.strip()]
    heading = 0   # a line ending in a colon is a heading: the lines after it join it until one does not
    while heading + 1 < len(lines) and lines[heading].endswith(":"):
        heading += 1
    assert line == (" ".join(lines[:heading + 1]) if lines else "ValueError")
    assert line and line == line.strip() and len(line.splitlines()) == 1
