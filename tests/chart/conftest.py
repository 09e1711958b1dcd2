"""Fixtures of the fast chart tests: one helm binary and a private helm home per session."""

from __future__ import annotations

import pytest

import chart_support


@pytest.fixture(scope="session")
def helm(tmp_path_factory) -> chart_support.Helm:
    return chart_support.Helm(chart_support.helm_binary(), tmp_path_factory.mktemp("helm-home"))
