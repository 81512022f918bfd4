"""Tamper evidence: the hash chain on SQLite, PostgreSQL and in memory; `dala verify` and its
checkpoints; the log key; migration 0003; rebuilds that refuse what does not verify."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from freezegun import freeze_time
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import bindparam, select, text

from dala_events import aio
from dala_events import persistence_manager as pm
from dala_events.app import Dala, Mode
from dala_events.cli import main
from dala_events.database_setup import (
    close_db,
    configured_log_key,
    create_dala_engine,
    init_db,
    migrate,
    open_db,
    store_for,
)
from dala_events.dialects import EventIdText, UTCDateTime
from dala_events.envelopes import AppendedEvent, NewEvent
from dala_events.errors import InvalidInput
from dala_events.events import InterestAdded, LearnerProfileCreated
from dala_events.integrity import (
    IntegrityError,
    check_chains,
    engine_check,
    load_checkpoint,
    verify_log,
    write_checkpoint,
)
from dala_events.settings import Settings
from dala_events.store import InMemoryEventStore, LogKey, LogKeyError, SqlEventStore, event_log, log_chain
from dala_events.store.codec import (
    CHAIN_FORMAT,
    ChainRow,
    chain_rows,
    encode_row,
    hasher,
    link_of,
    parse_time_text,
    time_text,
)
from dala_events.store.sql import mark_as_log_writer
from projections.projectors import project_events
from projections.rebuild import RebuildError, rebuild
from tests.conftest import POSTGRES_URL, require_postgres, reset_postgres
from tests.helpers import log_row_count, read_model_rows, when_the_rebuild_waits

KEY_HEX = "5a" * 32
OTHER_KEY_HEX = "a5" * 32
T0 = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def _new(event: Any, n: int, occurred_at: datetime | None = None) -> NewEvent:
    event_id = f"0190a1b2-c3d4-7e5f-8a6b-{n:012x}"
    return NewEvent(event, event_id, occurred_at or T0 + timedelta(minutes=n), {"actor": "teacher:7", "n": n})


def _fill(store: Any) -> None:
    """ann: versions 1-6 (positions 1-6); bob: versions 1-2 (positions 7-8)."""
    ann = [_new(LearnerProfileCreated(), 1)] + [_new(InterestAdded(interest_name=f"topic {n}"), n) for n in range(2, 7)]
    store.append("ann", ann, 0)
    store.append("bob", [_new(LearnerProfileCreated(), 7), _new(InterestAdded(interest_name="music"), 8)], 0)


def _url(store: SqlEventStore) -> str:
    return store.engine.url.render_as_string(hide_password=False)


def _tamper(store: SqlEventStore, statement: str, **values: Any) -> None:
    clause = text(statement)
    if "t" in values:
        clause = clause.bindparams(bindparam("t", type_=UTCDateTime()))
    with store.engine.begin() as connection:
        connection.execute(clause, values)


def _kinds(report: Any) -> list[tuple[str, str, int]]:
    return [(problem.kind, problem.learner_id, problem.version) for problem in report.problems]


@pytest.fixture
def filled(store: SqlEventStore) -> SqlEventStore:
    _fill(store)
    return store


# -- the chain itself -------------------------------------------------------------------------


@pytest.mark.parametrize("key_hex", [None, KEY_HEX])
def test_the_stores_hash_the_documented_message_and_agree_with_each_other(
    store: SqlEventStore, key_hex: str | None
) -> None:
    key = None if key_hex is None else LogKey.from_hex(key_hex)
    sql = SqlEventStore(store.engine, log_key=key)
    memory = InMemoryEventStore(log_key=key)
    with freeze_time(T0 + timedelta(hours=1)):
        _fill(sql)
        _fill(memory)
    with store.engine.connect() as connection:
        stored = [row.hash for row in connection.execute(select(event_log.c.hash).order_by(event_log.c.position))]
    in_memory = [row[10] for rows in memory.stored_rows() for row in rows]
    assert stored == in_memory and len(set(stored)) == 8

    # The first event, hashed by hand from the format the codec documents.
    payload, metadata = "{}", '{"actor":"teacher:7","n":1}'
    fields = ["", "0190a1b2-c3d4-7e5f-8a6b-000000000001", "ann", "1", "LearnerProfileCreated", "1",
              "2026-03-03 09:01:00.000000", "2026-03-03 10:00:00.000000", payload, metadata]  # fmt: skip
    message = (CHAIN_FORMAT + "".join(f"{len(field)}:{field}" for field in fields)).encode()
    expected = (
        hashlib.sha256(message).hexdigest()
        if key_hex is None
        else hmac.new(bytes.fromhex(key_hex), message, hashlib.sha256).hexdigest()
    )
    assert stored[0] == expected
    # The second links to the first.
    second = next(iter(memory.stored_rows()))[1]
    assert link_of(second, stored[0], hasher(key)) == stored[1]


def test_the_chain_text_of_a_time_is_what_sqlite_stores() -> None:
    to_sqlite = UTCDateTime().bind_processor(sa.create_engine("sqlite://").dialect)
    assert to_sqlite is not None
    for moment in (
        T0,
        datetime(1, 1, 3, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=5))),
        datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2026, 7, 1, 12, 0, tzinfo=timezone(timedelta(hours=2, minutes=30))),
    ):
        assert time_text(moment) == to_sqlite(moment)


def test_times_far_apart_and_in_other_zones_verify_on_both_backends(store: SqlEventStore) -> None:
    moments = [
        datetime(1, 1, 3, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=5))),
        datetime(9999, 12, 29, 18, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2026, 7, 1, 12, 0, 0, 1, tzinfo=timezone(timedelta(hours=2, minutes=30))),
    ]
    events = [_new(LearnerProfileCreated(), 1, moments[0])]
    events += [_new(InterestAdded(interest_name=f"i{n}"), n, moments[n - 1]) for n in (2, 3)]
    # An event id given in capitals is stored, read back and hashed in its canonical form.
    events.append(NewEvent(InterestAdded(interest_name="caps"), "0190A1B2-C3D4-7E5F-8A6B-0000000000FF", T0, {}))
    store.append("ann", events, 0)
    report = verify_log(store.engine, None)
    assert report.intact and report.verified == 4, report.problems
    assert rebuild(store.engine, cipher=store.cipher).events == 4


def test_concurrent_appenders_still_chain_one_after_the_other(filled: SqlEventStore) -> None:
    from dala_events.errors import ConcurrencyError

    with pytest.raises(ConcurrencyError):
        filled.append("ann", [_new(InterestAdded(interest_name="late"), 99)], 5)
    filled.append("ann", [_new(InterestAdded(interest_name="next"), 99)], 6)
    assert verify_log(filled.engine, None).intact


# -- each kind of tampering, on both backends ---------------------------------------------------

TAMPERING = {
    "payload": (
        "UPDATE event_log SET payload = '{\"interest_name\":\"hacked\"}' WHERE learner_id = 'ann' AND version = 3",
        ("changed", "ann", 3),
        "learner 'ann' version 3 (log position 3): changed: its stored values do not match its hash",
    ),
    "metadata": (
        "UPDATE event_log SET metadata = '{\"actor\":\"someone else\"}' WHERE learner_id = 'ann' AND version = 2",
        ("changed", "ann", 2),
        "learner 'ann' version 2 (log position 2): changed: its stored values do not match its hash",
    ),
    "version": (
        "UPDATE event_log SET version = 100 WHERE learner_id = 'ann' AND version = 2",
        ("changed", "ann", 2),
        "learner 'ann' version 2 (log position 2): changed: written as version 2, stored as version 100",
    ),
    "occurred_at": (
        "UPDATE event_log SET occurred_at = :t WHERE learner_id = 'ann' AND version = 4",
        ("changed", "ann", 4),
        "learner 'ann' version 4 (log position 4): changed: its stored values do not match its hash",
    ),
    "recorded_at": (
        "UPDATE event_log SET recorded_at = :t WHERE learner_id = 'ann' AND version = 6",
        ("changed", "ann", 6),
        "learner 'ann' version 6 (log position 6): changed: its stored values do not match its hash",
    ),
    "moved": (
        "UPDATE event_log SET learner_id = 'bob' WHERE learner_id = 'ann' AND version = 4",
        ("moved", "ann", 4),
        "learner 'ann' version 4 (log position 4): moved: stored under learner 'bob'",
    ),
    "deleted": (
        "DELETE FROM event_log WHERE learner_id = 'ann' AND version = 3",
        ("deleted", "ann", 3),
        "learner 'ann' version 3 (log position 4): deleted: missing before position 4",
    ),
}


@pytest.mark.parametrize("kind", list(TAMPERING))
def test_each_kind_of_tampering_is_reported_by_verify_and_refused_by_rebuild(filled: SqlEventStore, kind: str) -> None:
    statement, expected, refusal = TAMPERING[kind]
    live = read_model_rows(filled.engine)
    _tamper(filled, statement, **({"t": datetime(2020, 1, 1, tzinfo=UTC)} if ":t" in statement else {}))

    report = verify_log(filled.engine, None)
    assert not report.intact
    assert _kinds(report) == [expected]
    if kind == "moved":
        assert report.problems[0].now_learner_id == "bob"
    if kind == "version":
        assert "stored as version 100" in report.problems[0].detail

    with pytest.raises(RebuildError, match=re.escape(refusal)) as refused_by_rebuild:
        rebuild(filled.engine, cipher=filled.cipher)
    assert report.problems[0].describe() in str(refused_by_rebuild.value)  # the same verdict as verify's
    assert read_model_rows(filled.engine) == live  # nothing swapped in

    result = CliRunner().invoke(main, ["--database-url", _url(filled), "verify", "--json"])
    assert result.exit_code == 1, result.output
    assert [(p["kind"], p["learner_id"], p["version"]) for p in json.loads(result.stdout)["problems"]] == [expected]
    refused = CliRunner().invoke(main, ["--database-url", _url(filled), "rebuild"])
    assert refused.exit_code == 1 and "nothing was swapped in" in refused.stderr
    close_db()


def test_an_intact_log_verifies_and_rebuilds(filled: SqlEventStore) -> None:
    inline = read_model_rows(filled.engine)
    report = verify_log(filled.engine, None)
    assert report.intact and (report.events, report.streams, report.verified) == (8, 2, 8)
    assert report.mode == "sha256" and report.log_mode == "sha256"
    assert report.engine_check is not None and report.engine_check.ok in (True, None)
    assert rebuild(filled.engine, cipher=filled.cipher).events == 8 and read_model_rows(filled.engine) == inline

    result = CliRunner().invoke(main, ["--database-url", _url(filled), "verify"])
    assert result.exit_code == 0, result.output
    assert "checked 8 events in 2 streams: plain SHA-256" in result.stdout and "intact" in result.stdout
    assert "database check" in result.stdout
    only_bob = verify_log(filled.engine, None, learner_ids=["bob"])
    assert only_bob.intact and (only_bob.events, only_bob.streams) == (2, 1)


def test_swapped_versions_are_reordered_and_a_row_the_chain_runs_past_is_inserted() -> None:
    memory = InMemoryEventStore()
    _fill(memory)
    memory.append("ann", [_new(InterestAdded(interest_name="seventh"), 9)], 6)
    rows = [row for batch in memory.stored_rows() for row in batch]
    placed = [(row.position, row.learner_id, row.version) for row in rows][5:]
    assert placed == [(6, "ann", 6), (7, "bob", 1), (8, "bob", 2), (9, "ann", 7)]

    def with_version(row: ChainRow, version: int) -> ChainRow:
        return row._replace(version=version)

    swapped = list(rows)
    swapped[2], swapped[3] = with_version(rows[2], 4), with_version(rows[3], 3)
    report = check_chains([swapped[:4], swapped[4:]], None)
    assert _kinds(report) == [("reordered", "ann", 3), ("reordered", "ann", 4)]
    assert "stored as version 4" in report.problems[0].detail

    # A row slipped in (at a free position, with a version the stream had) that nothing links to.
    extra = rows[3]._replace(
        position=8.5, event_id="0190a1b2-c3d4-7e5f-8a6b-0000000000aa", learner_id="ann", version=2, hash="f" * 64
    )
    assert _kinds(check_chains([[*rows[:8], extra, rows[8]]], None)) == [("inserted", "ann", 2)]


def test_the_tail_of_a_stream_moved_to_another_is_named_moved() -> None:
    memory = InMemoryEventStore()
    _fill(memory)
    rows = [row for batch in memory.stored_rows() for row in batch]
    # ann's version 6 now stored as bob's (bob has versions 1-2, so 6 is free there).
    tampered = [row._replace(learner_id="bob") if (row.learner_id, row.version) == ("ann", 6) else row for row in rows]
    report = check_chains([tampered], None)
    assert _kinds(report) == [("moved", "ann", 6)] and report.problems[0].now_learner_id == "bob"


def _interleaved_log(key: LogKey | None) -> list[ChainRow]:
    memory = InMemoryEventStore(log_key=key)
    for n, learner in enumerate("abcde"):
        memory.append(learner, [_new(LearnerProfileCreated(), n)], 0)
    for n in range(40):
        learner = "abcde"[(n * 7) % 5 if n % 3 else n % 5]
        memory.append(learner, [_new(InterestAdded(interest_name=f"x{n}"), 10 + n)], memory.stream_version(learner))
    return [row for batch in memory.stored_rows() for row in batch]


_KEYED_LOG = _interleaved_log(LogKey.from_hex(KEY_HEX))


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["payload", "metadata", "time", "move", "delete", "swap", "insert"]), at=st.integers(0, 44))
def test_any_one_tampering_is_found_and_named(kind: str, at: int) -> None:
    rows = list(_KEYED_LOG)
    row = rows[at]
    stream = [i for i, other in enumerate(rows) if other.learner_id == row.learner_id]
    if kind == "payload":
        rows[at] = row._replace(payload=row.payload[:-1] + " }")
    elif kind == "metadata":
        rows[at] = row._replace(metadata=row.metadata.replace("teacher", "admin"))
    elif kind == "time":
        rows[at] = row._replace(occurred_at="2020-01-01 00:00:00.000000")
    elif kind == "move":
        rows[at] = row._replace(learner_id="abcde"[("abcde".index(row.learner_id) + 1) % 5])
    elif kind == "delete":
        assume(at != stream[-1])  # the end of a stream needs a checkpoint
        del rows[at]
    elif kind == "swap":
        assume(at != stream[-1])
        other = stream[stream.index(at) + 1]
        rows[at], rows[other] = row._replace(version=rows[other].version), rows[other]._replace(version=row.version)
    else:
        rows.insert(at, row._replace(event_id="0190a1b2-c3d4-7e5f-8a6b-0000000000aa", version=0, hash="0" * 64))
    report = check_chains([rows[:10], rows[10:]], LogKey.from_hex(KEY_HEX))
    named = {"payload": "changed", "metadata": "changed", "time": "changed", "move": "moved",
             "delete": "deleted", "swap": "reordered", "insert": "inserted"}  # fmt: skip
    assert not report.intact
    assert {problem.kind for problem in report.problems} == {named[kind]}, report.problems


# -- checkpoints ------------------------------------------------------------------------------


def test_events_cut_from_the_end_and_removed_streams_show_against_a_checkpoint(
    filled: SqlEventStore, tmp_path: Path
) -> None:
    checkpoint_file = tmp_path / "heads.json"
    made = CliRunner().invoke(main, ["--database-url", _url(filled), "verify", "--checkpoint", str(checkpoint_file)])
    assert made.exit_code == 0 and "checkpoint written" in made.stdout
    document = json.loads(checkpoint_file.read_text())
    assert document["format"] == "dala-events checkpoint/1" and document["key_mode"] == "sha256"
    assert [(h["learner_id"], h["last_version"], h["events"]) for h in document["heads"]] == [
        ("ann", 6, 6),
        ("bob", 2, 2),
    ]

    _tamper(filled, "DELETE FROM event_log WHERE learner_id = 'ann' AND version >= 5")
    _tamper(filled, "DELETE FROM event_log WHERE learner_id = 'bob'")
    assert verify_log(filled.engine, None).intact  # no chain can tell by itself
    report = verify_log(filled.engine, None, checkpoint=load_checkpoint(checkpoint_file, None))
    assert [(p.kind, p.learner_id, p.versions) for p in report.problems] == [
        ("deleted", "ann", "5-6"),
        ("deleted", "bob", "1-2"),
    ]
    assert "cut from the end" in report.problems[0].detail and "whole stream is gone" in report.problems[1].detail

    result = CliRunner().invoke(main, ["--database-url", _url(filled), "verify", "--against", str(checkpoint_file)])
    assert result.exit_code == 1 and "NOT INTACT: 2 deleted" in result.stdout
    newer = tmp_path / "newer.json"
    again = CliRunner().invoke(
        main, ["--database-url", _url(filled), "verify", "--against", str(checkpoint_file), "--checkpoint", str(newer)]
    )
    assert again.exit_code == 1 and "no checkpoint written" in again.stdout and not newer.exists()


def test_a_chain_rewritten_without_a_key_shows_only_against_a_checkpoint(filled: SqlEventStore, tmp_path: Path) -> None:
    report = verify_log(filled.engine, None)
    write_checkpoint(tmp_path / "heads.json", report.heads, None)
    # Someone who can write and knows the format (no key to stop them) edits ann's version 3
    # and recomputes every hash after it.
    _rechain(filled, "ann", 3, '{"interest_name":"rewritten"}', None)
    assert verify_log(filled.engine, None).intact
    against = verify_log(filled.engine, None, checkpoint=load_checkpoint(tmp_path / "heads.json", None))
    assert _kinds(against) == [("changed", "ann", 6)] and "rewritten since" in against.problems[0].detail


def test_a_checkpoint_that_was_changed_or_signed_otherwise_is_refused(filled: SqlEventStore, tmp_path: Path) -> None:
    heads = verify_log(filled.engine, None).heads
    path = tmp_path / "heads.json"
    key = LogKey.from_hex(KEY_HEX)
    write_checkpoint(path, heads, key)
    assert set(load_checkpoint(path, key).heads) == {"ann", "bob"}
    with pytest.raises(IntegrityError, match="signed with a log key"):
        load_checkpoint(path, None)
    with pytest.raises(IntegrityError, match="signed with another log key"):
        load_checkpoint(path, LogKey.from_hex(OTHER_KEY_HEX))
    document = json.loads(path.read_text())
    document["heads"][0]["last_version"] = 5
    path.write_text(json.dumps(document))
    with pytest.raises(IntegrityError, match="signature does not verify"):
        load_checkpoint(path, key)
    write_checkpoint(path, heads, None)
    with pytest.raises(IntegrityError, match="without a key"):
        load_checkpoint(path, key)
    path.write_text("{}")
    with pytest.raises(IntegrityError, match="is not a checkpoint"):
        load_checkpoint(path, None)
    result = CliRunner().invoke(main, ["--database-url", _url(filled), "verify", "--against", str(path)])
    assert result.exit_code == 1 and "is not a checkpoint" in result.stderr


# -- the log key ------------------------------------------------------------------------------


@pytest.fixture
def keyed(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[SqlEventStore]:
    """A store on a fresh database whose log is chained with KEY_HEX (set in the environment)."""
    monkeypatch.setenv("DALA_LOG_KEY", KEY_HEX)
    monkeypatch.delenv("DALA_LOG_KEY_FILE", raising=False)
    engine = init_db(database_url)
    try:
        store = store_for(engine)
        _fill(store)
        yield store
    finally:
        close_db()


def test_a_keyed_log_verifies_only_with_its_key(keyed: SqlEventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    key = LogKey.from_hex(KEY_HEX)
    assert keyed.log_key is not None and keyed.log_key.key_id == key.key_id
    with keyed.engine.connect() as connection:
        record = connection.execute(select(log_chain.c.mode, log_chain.c.key_id)).one()
    assert tuple(record) == ("hmac-sha256", key.key_id)
    report = verify_log(keyed.engine, key)
    assert report.intact and report.mode == "hmac-sha256" and report.key_id == key.key_id

    # Without its key (or with another) a keyed log is not walked: every link would fail and the
    # report would read as forgery. The refusal names the key the log needs.
    with pytest.raises(LogKeyError, match=rf"chained with a log key \(id {key.key_id}\); set DALA_LOG_KEY"):
        verify_log(keyed.engine, None)
    with pytest.raises(LogKeyError, match=rf"log key of id {key.key_id}, not the configured one"):
        verify_log(keyed.engine, LogKey.from_hex(OTHER_KEY_HEX))
    result = CliRunner().invoke(main, ["--database-url", _url(keyed), "verify"])
    # The report is wrapped at the terminal's width: read as words.
    said = " ".join(result.stdout.split())
    assert result.exit_code == 0 and f"HMAC-SHA256 with the log key (key id {key.key_id})" in said
    monkeypatch.setenv("DALA_LOG_KEY", OTHER_KEY_HEX)
    wrong_key = CliRunner().invoke(main, ["--database-url", _url(keyed), "verify"])
    assert wrong_key.exit_code == 1 and wrong_key.stdout == ""
    assert wrong_key.stderr.strip().splitlines() == [
        f"error: the event log is chained with the log key of id {key.key_id}, not the configured one "
        f"(id {LogKey.from_hex(OTHER_KEY_HEX).key_id})"
    ]


def test_a_keyed_log_read_without_its_key_is_refused_in_one_line_before_anything_is_checked(
    keyed: SqlEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new shell or a cron job without DALA_LOG_KEY_FILE: every read and verify says that the
    log needs its key, in one line (exit 1), and reports no event as changed or forged."""
    key = LogKey.from_hex(KEY_HEX)
    url = _url(keyed)
    monkeypatch.delenv("DALA_LOG_KEY")
    needed = f"error: the event log is chained with a log key (id {key.key_id}); set DALA_LOG_KEY or DALA_LOG_KEY_FILE"
    reads = [
        ["verify"],
        ["verify", "ann"],
        ["history", "ann"],
        ["history", "ann", "--json"],
        ["profile", "ann"],
        ["profile", "ann", "--version", "2"],
        ["diff", "ann", "1", "2"],
        ["export", "ann"],
        ["learners"],
        ["disclosures", "ann"],
        ["subscriptions"],
    ]
    for command in reads:
        result = CliRunner().invoke(main, ["--database-url", url, *command])
        assert (result.exit_code, result.stdout, result.stderr.strip().splitlines()) == (1, "", [needed]), command
    with pytest.raises(LogKeyError, match="set DALA_LOG_KEY"):
        open_db(url)
    with pytest.raises(LogKeyError, match="set DALA_LOG_KEY"):
        Dala.open(Settings.from_env().with_database(url), mode=Mode.READ)
    with pytest.raises(LogKeyError, match="set DALA_LOG_KEY"):
        asyncio.run(aio.AsyncDala.open(Settings.from_env().with_database(url), mode=Mode.READ))


def test_a_process_with_another_key_or_none_is_refused_at_start(
    keyed: SqlEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _url(keyed)
    monkeypatch.setenv("DALA_LOG_KEY", OTHER_KEY_HEX)
    with pytest.raises(LogKeyError, match="not the configured one"):
        init_db(url)
    monkeypatch.delenv("DALA_LOG_KEY")
    with pytest.raises(LogKeyError, match="set DALA_LOG_KEY"):
        init_db(url)
    with pytest.raises(LogKeyError):
        rebuild(keyed.engine, cipher=keyed.cipher)  # without the key


def test_without_the_key_write_access_cannot_forge_a_link(keyed: SqlEventStore) -> None:
    key = LogKey.from_hex(KEY_HEX)
    # Someone who can write edits ann's version 3 and recomputes the chain after it, without
    # the key: as plain SHA-256, and as HMAC under a key of their own.
    for forging_key in (None, LogKey.from_hex(OTHER_KEY_HEX)):
        _rechain(keyed, "ann", 3, '{"interest_name":"forged"}', forging_key)
        report = verify_log(keyed.engine, key)
        assert _kinds(report)[0] == ("changed", "ann", 3)
        with pytest.raises(RebuildError, match=r"learner 'ann' version 3 \(log position 3\): changed"):
            rebuild(keyed.engine, cipher=keyed.cipher, log_key=key)


def _rechain(store: SqlEventStore, learner_id: str, version: int, payload: str, key: LogKey | None) -> None:
    """Tamper: set a payload and recompute the stream's hashes from that version on."""
    digest = hasher(key)
    with store.engine.begin() as connection:
        connection.execute(
            event_log.update()
            .where(event_log.c.learner_id == learner_id, event_log.c.version == version)
            .values(payload=payload)
        )
    rows = [row for batch in store.stored_rows(learner_ids=[learner_id]) for row in batch]
    previous = ""
    with store.engine.begin() as connection:
        for row in rows:
            if row[6] >= version:
                new_hash = link_of(row, previous, digest)
                connection.execute(event_log.update().where(event_log.c.position == row[0]).values(hash=new_hash))
                previous = new_hash
            else:
                previous = row[10]


def test_the_log_key_comes_from_the_environment_or_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("DALA_LOG_KEY", "DALA_LOG_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert configured_log_key() is None
    monkeypatch.setenv("DALA_LOG_KEY", KEY_HEX)
    from_env = configured_log_key()
    assert from_env is not None and from_env.key_id == LogKey(bytes.fromhex(KEY_HEX)).key_id
    assert KEY_HEX not in repr(from_env)
    key_file = tmp_path / "log.key"
    key_file.write_text(KEY_HEX + "\n")
    monkeypatch.setenv("DALA_LOG_KEY_FILE", str(key_file))
    with pytest.raises(InvalidInput, match="not both"):
        configured_log_key()
    monkeypatch.delenv("DALA_LOG_KEY")
    from_file = configured_log_key()
    assert from_file is not None and from_file.key_id == from_env.key_id
    monkeypatch.setenv("DALA_LOG_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(InvalidInput, match="DALA_LOG_KEY_FILE: cannot read"):
        configured_log_key()
    monkeypatch.delenv("DALA_LOG_KEY_FILE")
    for bad, problem in (("ab" * 31, "must be at least 32 bytes"), ("zz" * 32, "must be hex digits")):
        monkeypatch.setenv("DALA_LOG_KEY", bad)
        with pytest.raises(InvalidInput, match=f"DALA_LOG_KEY: {problem}"):
            configured_log_key()
    with pytest.raises(InvalidInput, match="at least 32 bytes"):
        LogKey(b"short")


# -- migration 0003 ---------------------------------------------------------------------------


@pytest.mark.parametrize("key_hex", [None, KEY_HEX])
def test_migration_0003_chains_a_log_made_at_revision_0002(database_url: str, key_hex: str | None) -> None:
    key = None if key_hex is None else LogKey.from_hex(key_hex)
    memory = InMemoryEventStore(log_key=key)
    _fill(memory)
    # A long stream, so that the migration's batches end inside one.
    memory.append("many", [_new(InterestAdded(interest_name=f"n{n}"), 100 + n) for n in range(5_003)], 0)
    expected = [row[10] for batch in memory.stored_rows() for row in batch]

    engine = create_dala_engine(database_url)
    try:
        assert migrate(engine, "0002", log_key=key) == "0002"
        old_log = sa.table(
            "event_log",
            *(sa.column(name) for name in ("learner_id", "version", "event_type", "schema_version", "payload")),
            sa.column("metadata"),
            sa.column("event_id", EventIdText()),
            sa.column("occurred_at", UTCDateTime()),
            sa.column("recorded_at", UTCDateTime()),
        )
        names = ("event_type", "schema_version", "payload", "event_id", "learner_id", "version",
                 "occurred_at", "recorded_at", "metadata")  # fmt: skip
        rows = [dict(zip(names, row[1:10], strict=True)) for batch in memory.stored_rows() for row in batch]
        for row in rows:  # chain rows carry times as text; the old table takes datetimes
            for name in ("occurred_at", "recorded_at"):
                row[name] = parse_time_text(row[name])
        with engine.begin() as connection:
            connection.execute(old_log.insert(), rows)

        assert migrate(engine, "0003", log_key=key) == "0003"
        with engine.connect() as connection:
            hashes = [row.hash for row in connection.execute(select(event_log.c.hash).order_by(event_log.c.position))]
            record = connection.execute(select(log_chain.c.mode, log_chain.c.key_id)).one()
            nullable = {c["name"]: c["nullable"] for c in sa.inspect(connection).get_columns("event_log")}["hash"]
        assert hashes == expected and nullable is False
        assert tuple(record) == (("sha256", None) if key is None else ("hmac-sha256", key.key_id))
        assert verify_log(engine, key).intact

        assert migrate(engine, "0002", downgrade=True) == "0002"
        with engine.connect() as connection:
            assert "hash" not in {c["name"] for c in sa.inspect(connection).get_columns("event_log")}
            assert "log_chain" not in sa.inspect(connection).get_table_names()
        assert migrate(engine, "0003", log_key=key) == "0003"
        assert verify_log(engine, key).intact
    finally:
        engine.dispose()


# -- the database's own check, and rebuilds with late commits ----------------------------------


def test_the_database_engine_check_says_which_check_ran(filled: SqlEventStore) -> None:
    with filled.engine.connect() as connection:
        check = engine_check(connection)
    if filled.engine.dialect.name == "sqlite":
        assert (check.name, check.ok, check.detail) == ("sqlite PRAGMA integrity_check", True, "ok")
        return
    assert check.name in ("none", "amcheck bt_index_check")
    if check.name == "none":
        assert check.ok is None and "amcheck" in check.detail
    with filled.engine.connect() as connection, connection.begin() as transaction:
        try:
            with connection.begin_nested():
                connection.execute(text("CREATE EXTENSION IF NOT EXISTS amcheck"))
        except sa.exc.DBAPIError:
            pytest.skip("amcheck cannot be installed here")
        checked = engine_check(connection)
        transaction.rollback()  # leave the database as it was
    assert (checked.name, checked.ok) == ("amcheck bt_index_check", True) and "uq_event_log_learner_version" in (
        checked.detail
    )


def test_values_no_store_writes_are_reported_not_crashed_on(sqlite_store: SqlEventStore) -> None:
    """SQLite takes any value in any column: a hand can store text as a version, a number as a
    time, anything as an event id. The check reports them like any other change."""
    _fill(sqlite_store)
    _tamper(sqlite_store, "UPDATE event_log SET version = 'three' WHERE learner_id = 'ann' AND version = 3")
    _tamper(sqlite_store, "UPDATE event_log SET occurred_at = 5 WHERE learner_id = 'ann' AND version = 5")
    _tamper(sqlite_store, "UPDATE event_log SET event_id = 'not an id' WHERE learner_id = 'bob' AND version = 2")
    report = verify_log(sqlite_store.engine, None)
    assert _kinds(report) == [("changed", "ann", 3), ("changed", "ann", 5), ("changed", "bob", 2)]
    assert "stored as version 'three'" in report.problems[0].detail
    with pytest.raises(RebuildError, match=r"version 3 \(log position 3\): changed: .* stored as version 'three'"):
        rebuild(sqlite_store.engine, cipher=sqlite_store.cipher)


def test_a_deleted_event_behind_a_hole_in_the_positions_is_still_refused(filled: SqlEventStore) -> None:
    _tamper(filled, "DELETE FROM event_log WHERE learner_id = 'ann' AND version = 2")
    with pytest.raises(RebuildError, match=r"learner 'ann' version 2 \(log position 3\): deleted"):
        rebuild(filled.engine, cipher=filled.cipher, batch_size=3)


def test_an_append_that_commits_late_is_checked_and_projected_in_version_order(
    tmp_path: os.PathLike[str],
) -> None:
    """PostgreSQL: learner late's version 1 takes a position, commits only after the rebuild has
    read past it, and version 2 is appended meanwhile. The rebuild holds version 2 back until
    the catch-up reads version 1, checks both links, and projects them in order.

    The late transaction commits after the rebuild's first batch or, when the rebuild has read
    nothing before its swap (a transaction anywhere on the server holds the horizon below
    every event), when the rebuild says it waits for it: the test never waits on itself."""
    require_postgres()
    reset_postgres()
    engine = init_db(POSTGRES_URL)
    holder = engine.connect()
    try:
        store = store_for(engine)
        store.append("ann", [_new(LearnerProfileCreated(), 1), _new(InterestAdded(interest_name="a"), 2)], 0)
        late_row = encode_row("late", 1, _new(LearnerProfileCreated(), 42), T0, store.cipher)  # as an append does
        chain_rows([late_row], "", None)
        transaction = holder.begin()
        mark_as_log_writer(holder)  # as an append does, before its first write
        holder.execute(event_log.insert().values({c.name: late_row[c.name] for c in event_log.c if c.name in late_row}))
        project_events(holder, [AppendedEvent("late", 1, T0, LearnerProfileCreated())])  # as an append does
        bob = [_new(LearnerProfileCreated(), 3)] + [_new(InterestAdded(interest_name=f"b{n}"), n) for n in (4, 5, 6)]
        store.append("bob", bob, 0)

        def commit_late(*_said: object) -> None:
            if transaction.is_active:
                transaction.commit()
                store.append("late", [_new(InterestAdded(interest_name="after"), 9)], 1)

        with when_the_rebuild_waits(commit_late):
            result = rebuild(engine, batch_size=4, progress=commit_late, cipher=store.cipher)
        assert result.events == log_row_count(engine) == 8
        assert [i.interest_name for i in pm.get_interests("late", store=store)] == ["after"]
    finally:
        holder.close()
        close_db()


# -- the commit order subscriptions rely on (PostgreSQL's transaction ids) ---------------------


def test_a_transaction_id_that_breaks_its_streams_order_is_reported(tmp_path: Path) -> None:
    """PostgreSQL: `transaction_id` is outside the chain (the database fills it), yet
    subscriptions deliver in its order. An id set below its predecessor's (an erasure that would
    never reach a feed), beyond every committed transaction (an event no feed would ever get) or
    below zero is reported by verify, against a checkpoint too, naming learner, version and
    position."""
    require_postgres()
    reset_postgres()
    engine = init_db(POSTGRES_URL)
    try:
        store = store_for(engine)
        _fill(store)
        checkpoint = tmp_path / "heads.json"
        written = CliRunner().invoke(main, ["--database-url", POSTGRES_URL, "verify", "--checkpoint", str(checkpoint)])
        assert written.exit_code == 0, written.output
        _tamper(store, "UPDATE event_log SET transaction_id = 1 WHERE learner_id = 'ann' AND version = 6")
        _tamper(store, "UPDATE event_log SET transaction_id = 9000000000000 WHERE learner_id = 'bob' AND version = 1")
        report = verify_log(engine, None)
        assert _kinds(report) == [("reordered", "ann", 6), ("reordered", "bob", 1)]
        backwards, future = report.problems
        assert backwards.position == 6 and "transaction id 1 is below version 5's" in backwards.detail
        assert future.position == 7 and "beyond every committed transaction" in future.detail
        assert not report.intact
        assert _kinds(verify_log(engine, None, learner_ids=["bob"])) == [("reordered", "bob", 1)]
        result = CliRunner().invoke(main, ["--database-url", POSTGRES_URL, "verify", "--against", str(checkpoint)])
        assert result.exit_code == 1 and "NOT INTACT" in result.output and "reordered" in result.output

        _tamper(store, "UPDATE event_log SET transaction_id = 0 WHERE learner_id = 'bob' AND version = 1")
        _tamper(store, "UPDATE event_log SET transaction_id = -5 WHERE learner_id = 'ann' AND version = 1")
        _tamper(
            store,
            "UPDATE event_log SET transaction_id = (SELECT transaction_id FROM event_log WHERE position = 5) "
            "WHERE learner_id = 'ann' AND version = 6",
        )
        assert _kinds(verify_log(engine, None)) == [("reordered", "ann", 1)]
    finally:
        close_db()
