"""A leaving member's proof reads records (docs/harper-semantics.md, 13): recorded real answers through the parsers
and the client (replayed by the fake server), and the answers the proof must refuse rather than guess."""

from __future__ import annotations

import pytest
from harper_fakes import Reply, recording

from harper_operator.harper import UnexpectedAnswerError
from harper_operator.harper.records import AuditEntry, UnreadableAnswer, audit_entries, key_text, tables, versions


def test_describe_database_keeps_only_the_tables_that_replicate():
    system = tables(recording("describe_database_system")["body"])
    assert system["hdb_nodes"] == "name" and system["hdb_user"] == "username"
    assert not {"hdb_analytics", "hdb_info", "hdb_certificate", "hdb_raw_analytics", "hdb_temp"} & set(system)
    assert tables(recording("describe_database_data")["body"]) == {"t": "id", "u": "id"}


def test_audit_entries_keep_operation_version_and_typed_ids_and_drop_the_records():
    entries = audit_entries(recording("read_audit_log_leaving_member_own_and_replicated")["body"])
    assert entries == [AuditEntry("upsert", 1796535465635.5369, (1, 2)), AuditEntry("delete", 1796535465953.0642, (2,)),
                       AuditEntry("upsert", 1796535466261.8193, (3,))]
    assert entries[0].keys == ("1", "2")
    assert audit_entries(recording("read_audit_log_after_survivors_version_empty")["body"]) == []


def test_record_versions_by_key_as_text_missing_ones_absent():
    found = versions(recording("search_by_id_deleted_and_missing_are_omitted")["body"], "id")
    assert found == {"3": 1796535466261.8193, "1": 1796535465635.5369}
    assert key_text(3.0) == key_text(3) == "3" and key_text("a") == "a"


@pytest.mark.parametrize("parse, answer", [
    (tables, []), (tables, {"t": {"name": "t"}}),
    (audit_entries, {}), (audit_entries, [{"timestamp": "x", "hash_values": [1]}]),
    (audit_entries, [{"timestamp": 1.0}]), (audit_entries, [{"timestamp": 1.0, "hash_values": [{"a": 1}]}]),
    (audit_entries, [{"timestamp": float("nan"), "hash_values": [1]}]),
    (lambda a: versions(a, "id"), {}), (lambda a: versions(a, "id"), [{"id": 1}]),
])
def test_an_answer_of_another_shape_is_refused_not_guessed(parse, answer):
    with pytest.raises(UnreadableAnswer):
        parse(answer)


async def test_the_client_sends_what_was_recorded_and_reads_the_answers(replay, fake_harper):
    client, load = replay
    fake = fake_harper
    load("read_audit_log_leaving_member_own_and_replicated")
    entries = await client.read_audit_log("data", "t", 1796535465603.1936, 3)
    assert [e.ids for e in entries] == [(1, 2), (2,), (3,)]
    load("search_by_id_deleted_and_missing_are_omitted")
    assert await client.record_versions("data", "t", "id", [3, 1, 2, 999]) == {"3": 1796535466261.8193,
                                                                               "1": 1796535465635.5369}
    load("describe_database_data")
    assert await client.describe_database("data") == {"t": "id", "u": "id"}
    bodies = [s.body for s in fake.seen]
    assert bodies[0] == recording("read_audit_log_leaving_member_own_and_replicated")["request"]
    assert bodies[1] == recording("search_by_id_deleted_and_missing_are_omitted")["request"]
    fake.handlers.clear()
    fake.on("read_audit_log", Reply(200, {"not": "a list"}))
    with pytest.raises(UnexpectedAnswerError, match="did not answer a list"):
        await client.read_audit_log("data", "t", 0.0, 3)
