"""What an auditor reads is checked: a forged line is refused, never shown as genuine.

Someone with write access to the database edits the log by hand; history, as-of views, diffs
and both exports check the chain of what they read and refuse (CorruptEventError; exit 1 on
the command line), as `dala verify` reports.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from dala_events.app import Dala
from dala_events.attribution import recorded_as
from dala_events.cli import main
from dala_events.errors import CorruptEventError
from dala_events.settings import Settings
from dala_events.store.codec import chain_message, event_id_text, hasher, time_text

FORGERIES = {
    "actor": "UPDATE event_log SET metadata = '{\"actor\":\"teacher:99\"}' WHERE learner_id = 'ann' AND version = 2",
    "time": "UPDATE event_log SET recorded_at = '2020-01-01 00:00:00.000000' WHERE learner_id = 'ann' AND version = 2",
    "hash": "UPDATE event_log SET hash = '" + "0" * 64 + "' WHERE learner_id = 'ann' AND version = 2",
    "deleted": "DELETE FROM event_log WHERE learner_id = 'ann' AND version = 2",
    "moved": "UPDATE event_log SET learner_id = 'bob', version = 3 WHERE learner_id = 'ann' AND version = 3",
}


@pytest.fixture
def school(tmp_path: Path) -> Iterator[Dala]:
    with Dala.open(Settings(database_url=f"sqlite:///{tmp_path}/school.db")) as dala:
        with recorded_as("teacher:7"):
            ann = dala.profile("ann")
            ann.add_interest("Chess")
            ann.add_interest("Music")
            ann.add_struggle_area("Fractions")
            dala.profile("bob").add_interest("Art")
        yield dala


def _tamper(dala: Dala, statement: str) -> None:
    with dala.engine.begin() as connection:
        connection.execute(text(statement))


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_every_audit_read_refuses_a_forged_line(school: Dala, forgery: str) -> None:
    _tamper(school, FORGERIES[forgery])
    assert not school.verify().intact
    victim = "bob" if forgery == "moved" else "ann"
    reads = [
        lambda: school.history(victim),
        lambda: school.as_of(victim, version=school.store.stream_version(victim)),
        lambda: school.diff(victim, 1, school.store.stream_version(victim)),
        lambda: school.export(victim),
    ]
    for read in reads:
        with pytest.raises(CorruptEventError, match=r"does not verify|is missing"):
            read()
    url = school.settings.database_url
    last = str(school.store.stream_version(victim))
    for args in (["history", victim], ["profile", victim, "--version", last], ["export", victim]):
        result = CliRunner().invoke(main, ["--database-url", url, *args])
        assert (result.exit_code == 1 and "does not verify" in result.output) or "is missing" in result.output, args


def test_a_forged_plain_text_event_is_refused_without_a_log_key(school: Dala) -> None:
    """No log key: whoever can write can compute a plain SHA-256 link. For a learner whose
    content is encrypted, a payload in the clear still gives the forgery away."""
    with school.engine.begin() as connection:
        last = connection.execute(
            text("SELECT version, hash FROM event_log WHERE learner_id = 'ann' ORDER BY version DESC LIMIT 1")
        ).one()
    at = datetime(2026, 12, 1, tzinfo=UTC)
    row = {
        "event_id": "0190a1b2-c3d4-7e5f-8a6b-0000000000f0",
        "learner_id": "ann",
        "version": last.version + 1,
        "event_type": "InterestAdded",
        "schema_version": 1,
        "payload": '{"interest_name":"forged"}',
        "metadata": '{"actor":"teacher:7"}',
    }
    message = chain_message(
        last.hash,
        event_id_text(row["event_id"]),
        "ann",
        row["version"],
        "InterestAdded",
        1,
        time_text(at),
        time_text(at),
        row["payload"],
        row["metadata"],
    )
    row["hash"] = hasher(None)(message)
    with school.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO event_log (event_id, learner_id, version, event_type, schema_version, occurred_at, "
                "recorded_at, payload, metadata, hash) VALUES (:event_id, :learner_id, :version, :event_type, "
                ":schema_version, :t, :t, :payload, :metadata, :hash)"
            ),
            {**row, "event_id": row["event_id"].replace("-", ""), "t": time_text(at)},
        )
    with pytest.raises(CorruptEventError, match="stored in the clear"):
        school.history("ann")
    report = school.verify()
    assert not report.intact and report.keys is not None
    assert ("stored in the clear", "ann", row["version"]) in {
        (p.kind, p.learner_id, p.version) for p in report.keys.problems
    }
    with pytest.raises(CorruptEventError, match="stored in the clear"):
        school.rebuild()
