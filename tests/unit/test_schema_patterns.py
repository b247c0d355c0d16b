"""The patterns /openapi.json states agree with the rules the API applies: a client (or a
fuzzer) that follows the schema is never refused, and one that breaks it never gets through."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from api.routes.tokens import TOKEN_NAME_PATTERN, TokenIn
from kiln.secrets import NAME_PATTERN, check_name

# Names near the rules' edges: reserved words and prefixes, digits first, lower case.
NAME_PARTS = st.sampled_from(["HOME", "PATH", "KILN_", "KILN", "A", "_", "0", "a", "-", " "])
NAMES = st.one_of(st.text(max_size=140), st.lists(NAME_PARTS, max_size=6).map("".join))


def _accepted(rule: object, value: str) -> bool:
    try:
        rule(value)  # type: ignore[operator]
    except (ValueError, ValidationError):
        return False
    return True


@settings(max_examples=1500)
@given(NAMES)
def test_the_variable_name_pattern_is_exactly_the_name_rules(name: str) -> None:
    assert (re.fullmatch(NAME_PATTERN, name) is not None) == _accepted(check_name, name)


def test_reserved_names_break_the_pattern_too() -> None:
    for name in ("HOME", "PATH", "KILN_SECRET"):
        assert re.fullmatch(NAME_PATTERN, name) is None
    for name in ("HOMER", "PATH_EXTRA", "KILNX", "_KILN_"):
        assert re.fullmatch(NAME_PATTERN, name) is not None


@settings(max_examples=1500)
@given(st.text(alphabet=st.characters(max_codepoint=0x3000), max_size=120))
def test_the_token_name_pattern_is_exactly_what_a_token_may_be_called(name: str) -> None:
    schema_says = re.fullmatch(TOKEN_NAME_PATTERN, name) is not None and 1 <= len(name) <= 100
    assert schema_says == _accepted(lambda value: TokenIn(name=value), name)


def test_a_token_name_is_kept_without_the_spaces_around_it() -> None:
    assert TokenIn(name="  laptop \u3000").name == "laptop"
