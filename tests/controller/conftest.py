"""Fixtures for the controller shell's unit tests: the FAKE fleet and FAKE Kubernetes of fake_fleet.py."""

from __future__ import annotations

import pytest

from fake_fleet import FakeFleet, FakeKube, FakePool, admin_secret

from harper_operator import kube
from harper_operator.controller import dissolve, observe

NODES = ("127.0.0.11", "127.0.0.12", "127.0.0.13")


@pytest.fixture
def fleet() -> FakeFleet:
    return FakeFleet.of(*NODES)


@pytest.fixture
def fake_kube(monkeypatch, fleet) -> FakeKube:
    k = FakeKube(secrets={"admin": admin_secret()})
    monkeypatch.setattr(kube, "read_secret", k.read_secret)
    monkeypatch.setattr(kube, "patch_status", k.patch_status)
    monkeypatch.setattr(kube, "list_objects", k.list_objects)
    monkeypatch.setattr(observe, "probe_replication", fleet.probe)
    monkeypatch.setattr(dissolve, "ClientPool", lambda *a, **kw: FakePool(fleet))
    return k
