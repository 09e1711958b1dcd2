"""The operator's Kubernetes Events name `harper-operator` as their reporting component, not `kopf`."""

from __future__ import annotations

import logging

import kopf
import pytest
from kopf._cogs.clients import api as kopf_api
from kopf._cogs.clients import events as kopf_events
from kopf._cogs.structs import references
from kopf._core.intents.causes import Activity

from harper_operator.handlers import events, startup

NODE = {"apiVersion": "harperoperator.dev/v1alpha1", "kind": "HarperNode",
        "metadata": {"name": "n-1", "namespace": "ns", "uid": "u-1"}}
CORE_EVENTS = references.Resource(group="", version="v1", plural="events", namespaced=True)


def _configured() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    startup.configure(settings=settings)
    return settings


def test_the_reporting_settings_come_from_the_one_startup_handler():
    handlers = [h.fn for h in kopf.get_default_registry()._activities.get_all_handlers()
                if h.activity == Activity.STARTUP]
    assert handlers == [startup.configure]


def test_settings_name_the_operator():
    posting = _configured().posting
    assert posting.reporting_component == "harper-operator"
    assert posting.event_name_prefix == "harper-operator-"
    assert posting.reporting_instance and posting.reporting_instance != "dev"
    assert len(posting.reporting_instance) <= 128


async def test_the_event_object_kopf_builds_carries_harper_operator(monkeypatch):
    sent: list[dict] = []

    async def post(url, *, payload, **_):
        sent.append({"url": url, "payload": payload})

    monkeypatch.setattr(kopf_api, "post", post)
    ref = {"apiVersion": NODE["apiVersion"], "kind": NODE["kind"], **NODE["metadata"]}
    await kopf_events.post_event(ref=ref, type="Warning", reason="ClusterNotFound", message="no cluster",
                                 resource=CORE_EVENTS, settings=_configured(), logger=logging.getLogger(__name__))
    [event] = sent
    body = event["payload"]
    assert event["url"].endswith("/namespaces/ns/events")
    assert body["reportingComponent"] == "harper-operator"
    assert body["source"] == {"component": "harper-operator"}
    assert body["metadata"]["generateName"].startswith("harper-operator-")
    assert "kopf" not in repr({k: v for k, v in body.items() if k not in ("involvedObject", "message")})
    assert body["involvedObject"]["name"] == "n-1" and body["reason"] == "ClusterNotFound"


@pytest.mark.parametrize("length", [10, events.EVENT_MESSAGE_LIMIT, 5000])
def test_post_keeps_the_signature_and_clips_long_messages(monkeypatch, length):
    posted: list[dict] = []
    monkeypatch.setattr(kopf, "event", lambda body, **kw: posted.append({"body": body, **kw}))
    events.post(NODE, "Normal", "Applied", "x" * length)
    [event] = posted
    assert event["body"] is NODE and event["type"] == "Normal" and event["reason"] == "Applied"
    assert len(event["message"]) == min(length, events.EVENT_MESSAGE_LIMIT)
