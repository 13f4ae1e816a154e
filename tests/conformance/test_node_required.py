"""Under `make test` the Node conformance tests must run: a missing Node side fails, not skips."""

from __future__ import annotations

import pytest

from tests.conformance import conftest


def test_a_missing_node_side_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    """With ASYNCPLUGIN_REQUIRE_NODE=1 (set by the Makefile's pytest target) the reason fails
    the test; without it the test is skipped with the same reason."""
    monkeypatch.setattr(conftest, "_node_unavailable", lambda: "node is not on PATH")
    monkeypatch.setenv(conftest.REQUIRE_NODE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="node is not on PATH"):
        conftest.require_node()
    monkeypatch.delenv(conftest.REQUIRE_NODE_ENV)
    with pytest.raises(pytest.skip.Exception, match="node is not on PATH"):
        conftest.require_node()


def test_the_makefile_requires_node_for_pytest() -> None:
    """The Makefile's pytest target installs node_modules first and sets the variable."""
    makefile = (conftest.ROOT / "Makefile").read_text()
    target = makefile.split("\npytest:", 1)[1].split("\n\n", 1)[0]
    assert "node/node_modules/.installed" in target.splitlines()[0]
    assert f"{conftest.REQUIRE_NODE_ENV}=1 $(PY) -m pytest" in target
