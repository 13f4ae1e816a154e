"""Protocol rules are an enum: an unknown rule name is refused, also under `python -O`."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from asyncplugin.protocol import RULES, ProtocolViolation, Rule, decode_response


def test_every_rule_has_a_statement_and_every_statement_a_rule() -> None:
    """RULES states each Rule in one line, and states nothing else."""
    assert set(RULES) == set(Rule)
    assert all(isinstance(text, str) and text.strip() for text in RULES.values())
    assert Rule.NO_DATA_OR_STATUS.statement == RULES[Rule.NO_DATA_OR_STATUS]


def test_a_rule_is_its_name() -> None:
    """A Rule compares, formats and travels as its UPPER_SNAKE name."""
    rule = Rule("RUNNING_WITHOUT_REMOTE_STATUS_INPUT")
    assert rule is Rule.RUNNING_WITHOUT_REMOTE_STATUS_INPUT
    assert rule == "RUNNING_WITHOUT_REMOTE_STATUS_INPUT"
    assert f"{rule}" == str(rule) == "RUNNING_WITHOUT_REMOTE_STATUS_INPUT"
    assert all(member.value == member.name for member in Rule)


@pytest.mark.parametrize("name", ["NOPE", "", "malformed_message", "MALFORMED_MESSAGE "])
def test_an_unknown_rule_name_is_refused(name: str) -> None:
    """Neither a Rule nor a ProtocolViolation can name a rule that does not exist."""
    with pytest.raises(ValueError, match="is not a valid Rule"):
        Rule(name)
    with pytest.raises(ValueError, match="is not a valid Rule"):
        ProtocolViolation(name, "detail")  # type: ignore[arg-type]


def test_a_violation_carries_its_rule_as_a_rule() -> None:
    """Violations found by validation carry a Rule member."""
    with pytest.raises(ProtocolViolation) as caught:
        decode_response(b"")
    assert caught.value.rule is Rule.NO_DATA_OR_STATUS
    assert str(caught.value).startswith("NO_DATA_OR_STATUS: ")


def test_unknown_rule_names_are_refused_under_python_dash_o() -> None:
    """`python -O` strips asserts; the rule check is not one, so it still refuses."""
    script = textwrap.dedent(
        """
        import sys
        from asyncplugin.protocol import ProtocolViolation, Rule

        assert False, "asserts are on"  # stripped under -O: proves the flag took effect
        refused = []
        for attempt in (lambda: Rule("NOPE"), lambda: ProtocolViolation("NOPE", "x")):
            try:
                attempt()
            except ValueError:
                refused.append(True)
        print(sys.flags.optimize, len(refused))
        """
    )
    done = subprocess.run(
        [sys.executable, "-O", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "2"]
