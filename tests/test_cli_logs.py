"""`harper-operator run --log-format json`: Kopf's own JSON formatter, the object on every line logged about one,
timestamps in UTC; plain logs as they were."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

import kopf
import pytest

from harper_operator import runner
from harper_operator.settings import OperatorSettings

BODY = {"apiVersion": "harperoperator.dev/v1alpha1", "kind": "HarperCluster",
        "metadata": {"name": "demo", "namespace": "team-a", "uid": "uid-1"}}


@pytest.fixture
def logged(capsys):
    """Configures logging as `run` does, and gives back the lines written; the root logger is restored after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def configure(log_format: str):
        runner._logging(OperatorSettings(log_format=log_format, log_level="INFO"))
        return lambda: capsys.readouterr().err.splitlines()

    yield configure
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_keep_the_object_and_a_utc_timestamp(logged):
    lines = logged("json")
    kopf.LocalObjectLogger(body=BODY, settings=kopf.OperatorSettings()).info("reconciled %s", "demo")
    logging.getLogger("harper_operator.controller").warning("no object here")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("harper_operator.handlers").exception("failed")
    first, second, third = (json.loads(line) for line in lines())
    assert first["message"] == "reconciled demo" and first["logger"] == "kopf.objects"
    assert {k: first["object"][k] for k in ("kind", "namespace", "name")} == {
        "kind": "HarperCluster", "namespace": "team-a", "name": "demo"}
    assert first["severity"] == "info" and second["severity"] == "warn" and "object" not in second
    for entry in (first, second, third):
        stamp = datetime.fromisoformat(entry["timestamp"])
        assert stamp.utcoffset() == timedelta(0)
    assert "ValueError: boom" in third["exc_info"]
    assert not any(k in first for k in ("settings", "k8s_ref", "k8s_skip"))  # Kopf's internals stay out


def test_plain_logs_are_unchanged(logged):
    lines = logged("plain")
    kopf.LocalObjectLogger(body=BODY, settings=kopf.OperatorSettings()).info("reconciled")
    (line,) = lines()
    assert line.endswith(" INFO kopf.objects: reconciled") and not line.startswith("{")
