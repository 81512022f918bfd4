"""Subscriptions: every event delivered, in order, never skipped, at least once (exactly once
for a handler writing with the checkpoint's transaction), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url

from dala_events.attribution import recorded_as
from dala_events.envelopes import ProjectableEvent, RecordedEvent
from dala_events.errors import InvalidInput, SubscriptionError
from dala_events.events import ErasedContent, LearnerErased
from dala_events.hlp_module import LearnerProfile
from dala_events.persistence_manager import erase_learner
from dala_events.store import SqlEventStore
from dala_events.store.sql import commit_horizon, mark_as_log_writer
from dala_events.subscriptions import Subscription, list_subscriptions, reset_subscription
from tests.conftest import POSTGRES_URL, require_postgres, reset_postgres


def _write(store: SqlEventStore, learner: str, *interests: str) -> None:
    profile = LearnerProfile(learner, store=store)
    for interest in interests:
        profile.add_interest(interest)


def _seen(events: Sequence[RecordedEvent]) -> list[tuple[str, int, str]]:
    return [(event.learner_id, event.version, event.event_type) for event in events]


def test_events_come_in_log_order_and_an_ack_moves_the_checkpoint(store: SqlEventStore) -> None:
    _write(store, "ann", "Robotics", "Chess")
    _write(store, "bob", "Dinosaurs")
    lrs = Subscription("lrs", store=store)
    first = lrs.fetch(3)
    assert _seen(first) == [
        ("ann", 1, "LearnerProfileCreated"),
        ("ann", 2, "InterestAdded"),
        ("ann", 3, "InterestAdded"),
    ]
    assert first[1].event.interest_name == "Robotics"  # type: ignore[attr-defined]  # decrypted
    assert _seen(lrs.fetch(10))[:3] == _seen(first)  # not acknowledged: delivered again
    lrs.ack(first[-1])
    assert _seen(lrs.fetch(10)) == [("bob", 1, "LearnerProfileCreated"), ("bob", 2, "InterestAdded")]
    # A new instance (another process, a restart) goes on from the checkpoint.
    again = Subscription("lrs", store=store)
    assert [event.learner_id for event in again.fetch(10)] == ["bob", "bob"]
    assert [status.name for status in list_subscriptions(store.engine)] == ["lrs"]
    assert list_subscriptions(store.engine)[0].lag == 2


def test_an_older_ack_never_moves_the_checkpoint_back(store: SqlEventStore) -> None:
    _write(store, "ann", "Robotics", "Chess")
    lrs = Subscription("lrs", store=store)
    events = lrs.fetch(10)
    lrs.ack(events[-1])
    lrs.ack(events[0])
    assert lrs.fetch(10) == []


def test_an_ack_of_an_event_not_fetched_is_refused(store: SqlEventStore) -> None:
    _write(store, "ann", "Robotics")
    lrs = Subscription("lrs", store=store)
    event = lrs.fetch(10)[0]
    other = Subscription("other", store=store)
    with pytest.raises(InvalidInput, match="not delivered by the last fetch"):
        other.ack(event)
    with pytest.raises(InvalidInput, match="name"):
        Subscription(" padded ", store=store)


def test_event_types_filter_what_is_delivered(store: SqlEventStore) -> None:
    _write(store, "ann", "Robotics", "Chess")
    interests = Subscription("interests", store=store, event_types=["InterestAdded"])
    assert [event.event_type for event in interests.fetch(10)] == ["InterestAdded", "InterestAdded"]
    with pytest.raises(InvalidInput, match="unknown event types"):
        Subscription("typo", store=store, event_types=["InterestAddd"])


def test_an_erased_learner_comes_as_erased_content_then_the_erasure(store: SqlEventStore) -> None:
    _write(store, "ann", "Robotics")
    lrs = Subscription("lrs", store=store)
    lrs.fetch(10)  # the key is cached here: the erasure must still be seen
    with recorded_as(actor="dpo:jane"):
        erase_learner("ann", reason="parent's request", store=store)
    events = lrs.fetch(10)
    assert all(type(event.event) is ErasedContent for event in events[:-1])
    assert type(events[-1].event) is LearnerErased and events[-1].metadata["actor"] == "dpo:jane"


def test_run_delivers_each_event_once_to_a_handler_writing_with_the_checkpoint(store: SqlEventStore) -> None:
    with store.engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS seen"))
        connection.execute(text("CREATE TABLE seen (position BIGINT)"))
    _write(store, "ann", "Robotics", "Chess", "Dinosaurs")
    failures = iter([False, False, True])  # the third event fails the first time only

    def handler(event: RecordedEvent, connection: Connection) -> None:
        connection.execute(text("INSERT INTO seen VALUES (:p)"), {"p": event.position})
        if next(failures, False):
            raise RuntimeError("the consumer crashed mid-event")

    lrs = Subscription("copy", store=store)
    try:
        with pytest.raises(RuntimeError):
            lrs.run(handler, stop_when_idle=True, in_transaction=True)
        # The failed batch committed nothing, its writes nor its checkpoint: all of it comes again.
        assert Subscription("copy", store=store).run(handler, stop_when_idle=True, in_transaction=True) == 4
        with store.engine.connect() as connection:
            seen = [row[0] for row in connection.execute(text("SELECT position FROM seen ORDER BY position"))]
        assert seen == [1, 2, 3, 4]
    finally:
        with store.engine.begin() as connection:
            connection.execute(text("DROP TABLE seen"))


def test_run_returns_when_idle_and_polls_until_stopped(store: SqlEventStore) -> None:
    _write(store, "ann", "Robotics")
    handled: list[int] = []
    stop = threading.Event()

    def handler(event: RecordedEvent) -> None:
        handled.append(event.position)
        if len(handled) == 2:
            stop.set()

    assert Subscription("a", store=store).run(handler, stop=stop) == 2
    with pytest.raises(InvalidInput, match="poll_interval"):
        Subscription("b", store=store).run(handler, poll_interval=0)


class _HeldAppend:
    """An inline projector that holds the append of one learner inside its transaction (the
    event inserted, not committed) until released."""

    def __init__(self, learner: str) -> None:
        self.learner = learner
        self.inserted = threading.Event()
        self.release = threading.Event()

    def __call__(self, connection: Connection, events: Sequence[ProjectableEvent]) -> None:
        if any(event.learner_id == self.learner for event in events):
            self.inserted.set()
            assert self.release.wait(30), "the test never released the held append"


def test_an_event_committed_after_higher_positions_is_delivered_in_its_place() -> None:
    """PostgreSQL only: there a later position can commit first (SQLite writers hold the write
    lock from their first statement to their commit)."""
    from dala_events.database_setup import close_db, init_db, store_for

    require_postgres()
    reset_postgres()
    engine = init_db(POSTGRES_URL)
    try:
        store = store_for(engine)
        _write(store, "ann", "Robotics")
        _write(store, "held")
        held = _HeldAppend("held")
        holding = SqlEventStore(engine, inline_projectors=(*store.inline_projectors, held), cipher=store.cipher)
        writer = threading.Thread(target=_write, args=(holding, "held", "Chess"))
        writer.start()
        assert held.inserted.wait(30)
        _write(store, "bob", "Dinosaurs")  # higher positions, committed first
        lrs = Subscription("lrs", store=store)
        before = lrs.fetch(100)
        assert ("bob", 1, "LearnerProfileCreated") not in _seen(before)  # behind the open transaction
        for event in before:
            lrs.ack(event)
        held.release.set()
        writer.join(30)
        after = lrs.fetch(100)
        delivered = _seen(before) + _seen(after)
        assert ("held", 2, "InterestAdded") in delivered and ("bob", 2, "InterestAdded") in delivered
        assert len(delivered) == len(set(delivered)) == 6  # each exactly once
        assert delivered.index(("held", 2, "InterestAdded")) < delivered.index(("bob", 1, "LearnerProfileCreated"))
    finally:
        close_db()


OTHER_DATABASE = f"{make_url(POSTGRES_URL).database}_other"
"""Another database on the test server, named after the configured one (two runs on one server
never meet), created and dropped by `other_database`."""


@pytest.fixture
def other_database() -> Iterator[str]:
    """The URL of another database of the same PostgreSQL server (created here, dropped after)."""
    require_postgres()
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {OTHER_DATABASE} WITH (FORCE)"))
            connection.execute(text(f"CREATE DATABASE {OTHER_DATABASE}"))
        try:
            yield make_url(POSTGRES_URL).set(database=OTHER_DATABASE).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f"DROP DATABASE IF EXISTS {OTHER_DATABASE} WITH (FORCE)"))
    finally:
        admin.dispose()


def _idle_with_a_transaction_id(engine: Any) -> tuple[Connection, int]:
    """A connection left inside a transaction that has a transaction id (as one that wrote
    something would), and that id."""
    connection = engine.connect()
    connection.begin()
    return connection, _xact_id(connection)


def test_transactions_that_cannot_write_the_log_hold_no_subscription_back(other_database: str) -> None:
    """PostgreSQL: a transaction idle in another database of the server, and one of this
    database that never marked itself as the log's writer, are older than every event, yet a new
    subscription gets everything; an append held open still holds back what committed after it,
    and is delivered in its place."""
    from dala_events.database_setup import close_db, init_db, store_for

    reset_postgres()
    engine = init_db(POSTGRES_URL)
    elsewhere, here = create_engine(other_database), create_engine(POSTGRES_URL)
    there_idle, there_id = _idle_with_a_transaction_id(elsewhere)
    here_idle, here_id = _idle_with_a_transaction_id(here)
    held = _HeldAppend("held")
    writer: threading.Thread | None = None
    try:
        store = store_for(engine)
        _write(store, "ann", "Robotics")
        lrs = Subscription("lrs", store=store)
        assert _seen(lrs.fetch(100)) == [("ann", 1, "LearnerProfileCreated"), ("ann", 2, "InterestAdded")]
        with engine.connect() as reader:
            assert any(_horizon(reader) > max(there_id, here_id) for _ in range(5))
        lrs.ack(lrs.fetch(100)[-1])

        _write(store, "held")
        holding = SqlEventStore(engine, inline_projectors=(*store.inline_projectors, held), cipher=store.cipher)
        writer = threading.Thread(target=_write, args=(holding, "held", "Chess"))
        writer.start()
        assert held.inserted.wait(30)
        _write(store, "bob", "Dinosaurs")  # higher positions and transaction ids, committed first
        before = lrs.fetch(100)
        assert _seen(before) == [("held", 1, "LearnerProfileCreated")]  # bob waits behind the open append
        lrs.ack(before[-1])
        held.release.set()
        writer.join(30)
        assert not writer.is_alive()
        assert _seen(lrs.fetch(100)) == [
            ("held", 2, "InterestAdded"),
            ("bob", 1, "LearnerProfileCreated"),
            ("bob", 2, "InterestAdded"),
        ]
    finally:
        held.release.set()
        if writer is not None:
            writer.join(30)
        for connection in (there_idle, here_idle):
            connection.close()
        elsewhere.dispose()
        here.dispose()
        close_db()


def _horizon(reader: Connection) -> int:
    with reader.begin():
        return commit_horizon(reader)


def _xact_id(connection: Connection) -> int:
    return int(connection.execute(text("SELECT pg_current_xact_id()::text::bigint")).scalar_one())


def test_the_horizon_waits_for_marked_transactions_only() -> None:
    """PostgreSQL: a transaction marked as the log's writer holds the horizon at its id once it
    has one (and before: its id comes out above the horizon read then); an unmarked one does not
    hold it back. (The server is shared: a transaction ending at the very moment the horizon is
    read may lower it once, never raise it; so what must pass the horizon is given a few reads.)"""
    require_postgres()
    engine = create_engine(POSTGRES_URL)
    try:
        with engine.connect() as marked, engine.connect() as plain, engine.connect() as reader:
            marked.begin()
            mark_as_log_writer(marked)
            before_its_id = _horizon(reader)
            marked_id = _xact_id(marked)
            assert marked_id >= before_its_id  # what it writes is above the horizon read before it had an id
            plain.begin()
            plain_id = _xact_id(plain)
            with engine.begin() as newer:  # a transaction after both, ended
                newer_id = _xact_id(newer)
            assert all(_horizon(reader) <= marked_id for _ in range(5))  # the marked one holds it
            marked.rollback()
            assert any(_horizon(reader) > newer_id > plain_id for _ in range(5))  # the unmarked one does not
            plain.rollback()
        one_snapshot = engine.connect().execution_options(isolation_level="REPEATABLE READ")
        with one_snapshot, one_snapshot.begin(), pytest.raises(InvalidInput, match="READ COMMITTED"):
            commit_horizon(one_snapshot)  # its later statements would not see what ended meanwhile
    finally:
        engine.dispose()


def test_dala_subscriptions_lists_checkpoints_and_lag(store: SqlEventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from click.testing import CliRunner

    from dala_events.cli import main

    _write(store, "ann", "Robotics")
    lrs = Subscription("lrs", store=store)
    lrs.ack(lrs.fetch(1)[0])
    url = store.engine.url.render_as_string(hide_password=False)
    result = CliRunner().invoke(main, ["subscriptions", "--json", "--database-url", url])
    assert result.exit_code == 0, result.output
    listed: list[dict[str, Any]] = json.loads(result.output)
    assert [(row["name"], row["position"], row["lag"]) for row in listed] == [("lrs", 1, 1)]


def test_a_handler_that_fails_keeps_what_it_handled_before_acknowledged(store: SqlEventStore) -> None:
    _write(store, "ann", "Robotics", "Chess", "Dinosaurs")
    handled: list[int] = []

    def handler(event: RecordedEvent) -> None:
        if event.version == 3 and 3 not in handled and len(handled) == 2:
            handled.append(0)  # fail once, at version 3
            raise RuntimeError("down")
        handled.append(event.version)

    lrs = Subscription("lrs", store=store)
    with pytest.raises(RuntimeError):
        lrs.run(handler, stop_when_idle=True)
    assert lrs.run(handler, stop_when_idle=True) == 2  # versions 3 and 4: 1 and 2 were acknowledged
    assert [version for version in handled if version] == [1, 2, 3, 4]


def test_an_event_whose_transaction_id_breaks_its_streams_order_is_refused_by_name() -> None:
    """PostgreSQL: subscriptions deliver in the order of the transaction ids, which no chain
    covers. An erasure whose id was set below the learner's first event would reach a new feed
    before the events it erases: the subscription refuses it, naming the event, filtered or not."""
    from dala_events.database_setup import close_db, init_db, store_for
    from dala_events.errors import CorruptEventError

    require_postgres()
    reset_postgres()
    engine = init_db(POSTGRES_URL)
    try:
        store = store_for(engine)
        _write(store, "ann", "Robotics")
        with recorded_as(actor="dpo:jane"):
            erase_learner("ann", reason="parent's request", store=store)
        with engine.begin() as connection:
            connection.execute(text("UPDATE event_log SET transaction_id = 1 WHERE event_type = 'LearnerErased'"))
        erasures = Subscription("erasures", store=store, event_types=["LearnerErased"])
        for subscription in (Subscription("all", store=store), erasures):
            with pytest.raises(CorruptEventError, match=r"learner 'ann' version 3 comes before version 2") as refused:
                subscription.fetch(10)
            assert (refused.value.position, refused.value.event_type) == (3, "LearnerErased")
            assert subscription.checkpoint() == (-1, 0)
    finally:
        close_db()


# -- a subscription's filter is its own --------------------------------------------------------


LEARNING = ["ActivityAttemptRecorded", "BadgeAwarded", "LearningObjectiveStarted"]


def _learn(store: SqlEventStore) -> None:
    profile = LearnerProfile("ann", store=store)
    profile.add_interest("Robotics")
    profile.start_lo("MATH_LO_001")
    profile.record_activity_attempt("MATH_LO_001", "act-1", "quiz", score=80.0, completed=True)
    profile.add_badge("trailblazer", "Trailblazer")


def test_a_subscription_keeps_its_filter_and_refuses_another(store: SqlEventStore) -> None:
    """The README's block and the LRS example once opened one name with two filters: the second
    sent nothing (the first had passed its other types). Now the filter is stored with the
    checkpoint and another one is refused, naming both."""
    _learn(store)
    badges = Subscription("badges", store=store, event_types=["BadgeAwarded", "ActivityAttemptRecorded"])
    badges.run(lambda event: None, stop_when_idle=True)
    with pytest.raises(SubscriptionError, match=r"subscription 'badges' delivers ActivityAttemptRecorded, BadgeAwarded"
                       r" only, not ActivityAttemptRecorded, BadgeAwarded, LearningObjectiveStarted") as refused:
        Subscription("badges", store=store, event_types=LEARNING)
    assert "dala subscriptions reset badges" in str(refused.value) and refused.value.name == "badges"
    with pytest.raises(SubscriptionError, match="not every event type"):
        Subscription("badges", store=store)
    again = Subscription("badges", store=store, event_types=("ActivityAttemptRecorded", "BadgeAwarded"))  # any order
    assert again.fetch(10) == []
    everything = Subscription("everything", store=store)
    with pytest.raises(SubscriptionError, match="delivers every event type, not BadgeAwarded"):
        Subscription("everything", store=store, event_types=["BadgeAwarded"])
    with pytest.raises(InvalidInput, match="event_types: must name at least one"):
        Subscription("nothing", store=store, event_types=[])
    assert [(s.name, s.event_types) for s in list_subscriptions(store.engine)] == [
        ("badges", ("ActivityAttemptRecorded", "BadgeAwarded")),
        ("everything", None),
    ]
    assert everything.fetch(1)[0].event_type == "LearnerProfileCreated"


def test_a_reset_starts_a_subscription_over_with_a_new_filter(store: SqlEventStore) -> None:
    _learn(store)
    lrs = Subscription("lrs", store=store, event_types=["BadgeAwarded"])
    assert lrs.run(lambda event: None, stop_when_idle=True) == 1
    assert reset_subscription(store.engine, "lrs") is True
    assert reset_subscription(store.engine, "lrs") is False  # nothing to reset
    for stale in (lrs.fetch, lrs.checkpoint):  # an instance opened before the reset cannot go on
        with pytest.raises(SubscriptionError, match="subscription 'lrs' was reset"):
            stale()
    lrs = Subscription("lrs", store=store, event_types=LEARNING)
    assert [event.event_type for event in lrs.fetch(10)] == [
        "LearningObjectiveStarted",
        "ActivityAttemptRecorded",
        "BadgeAwarded",
    ]


def test_an_ack_by_an_instance_opened_before_a_reset_is_refused(store: SqlEventStore) -> None:
    _learn(store)
    lrs = Subscription("lrs", store=store, event_types=["BadgeAwarded"])
    event = lrs.fetch(10)[0]
    reset_subscription(store.engine, "lrs")
    Subscription("lrs", store=store, event_types=LEARNING)
    with pytest.raises(SubscriptionError, match="subscription 'lrs' was reset"):
        lrs.ack(event)
    assert Subscription("lrs", store=store, event_types=LEARNING).checkpoint() == (-1, 0)


def test_a_subscription_recorded_before_filters_were_kept_takes_the_next_ones(store: SqlEventStore) -> None:
    """Migration 0010 cannot know what filter an older subscription was opened with: the next
    open records its own (as it would have used it before); from then on it is kept."""
    from dala_events.database_setup import migrate

    _learn(store)
    lrs = Subscription("lrs", store=store, event_types=["BadgeAwarded"])
    lrs.ack(lrs.fetch(1)[0])
    assert migrate(store.engine, "0009", downgrade=True) == "0009"
    assert migrate(store.engine) == "0010"
    assert [(s.name, s.position, s.event_types, s.filter_recorded) for s in list_subscriptions(store.engine)] == [
        ("lrs", 5, None, False)
    ]
    Subscription("lrs", store=store, event_types=LEARNING)
    assert [(s.event_types, s.filter_recorded) for s in list_subscriptions(store.engine)] == [(tuple(LEARNING), True)]
    with pytest.raises(SubscriptionError):
        Subscription("lrs", store=store, event_types=["BadgeAwarded"])


def test_dala_subscriptions_shows_each_filter_and_resets_one(store: SqlEventStore) -> None:
    import json

    from click.testing import CliRunner

    from dala_events.cli import main

    _learn(store)
    Subscription("badges", store=store, event_types=["BadgeAwarded"])
    Subscription("everything", store=store)
    url = store.engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    listed = json.loads(runner.invoke(main, ["subscriptions", "--json", "--database-url", url]).output)
    assert [(row["name"], row["event_types"]) for row in listed] == [("badges", ["BadgeAwarded"]), ("everything", None)]
    table = runner.invoke(main, ["subscriptions", "--database-url", url], env={"COLUMNS": "160"}).output
    assert "BadgeAwarded" in table and "every type" in table
    reset = runner.invoke(main, ["subscriptions", "reset", "badges", "--database-url", url])
    assert reset.exit_code == 0 and "badges" in reset.output and "beginning of the log" in reset.output
    assert [s.name for s in list_subscriptions(store.engine)] == ["everything"]
    unknown = runner.invoke(main, ["subscriptions", "reset", "nobody", "--database-url", url])
    assert unknown.exit_code == 1 and "no subscription 'nobody'" in unknown.output
    assert "Traceback" not in unknown.output and len(unknown.output.strip().splitlines()) == 1
