"""The model checker's figures (states explored, bounds, time) at the end of the run, with or without -s."""

from __future__ import annotations

import pytest

SUMMARY = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def model_check_summary(request) -> list[str]:
    """Lines a test adds here are printed in the terminal summary."""
    return request.config.stash.setdefault(SUMMARY, [])


def pytest_terminal_summary(terminalreporter, config) -> None:
    lines = config.stash.get(SUMMARY, [])
    if lines:
        terminalreporter.section("model checker (tests/modelcheck): the MODEL of Harper, explored")
        for line in lines:
            terminalreporter.write_line(line)
