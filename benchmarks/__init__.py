"""`make bench` (`python -m benchmarks`): the store measured against what a user would use instead.

Workload: N learners (`--learners`, default 200), each going through the 75 mutations of
`benchmarks.workload.learner_workload`, on SQLite files in a temporary folder. Measured:

writes (a) batched        the store with persistence off and one save() per learner; the
                          document's CRUD layer with one session and commit per learner; the
                          `eventsourcing` library with one save per learner, as it comes, with
                          its AES-GCM cipher on, and with the cipher and the eight tables kept
                          by a projection of its events (`benchmarks.peer`)
writes (b) per mutation   one transaction (commit, save) per mutation, for all of them
rebuild of (a)            `rebuild_projections` over the log (a) wrote, in events/s
rebuild at scale          a log of `--rebuild-events` events (default 1,000,000) written with the
                          workload, then rebuilt in a fresh process; its peak RSS is reported
audit                     one learner with about `--audit-events` events (default 5,000): the
                          median ms of `audit.history` and of `audit.profile_as_of` at the
                          latest version
peak RSS                  of each measurement's process (VmHWM), the largest over the rounds
checked floor             beside (a), (b), both rebuilds and the audit reads: plain sqlite3 doing
                          the store's per-event work as simply as Python allows
                          (`benchmarks.floor`), and a new learner's key made durable, which it
                          leaves out of its writes; "ours / checked floor" ratios with the goals
PostgreSQL (--only postgres) the group of `benchmarks.postgres`, whose bulk rows set `dala
                          restore` (the log, and the rebuild's replay) against psycopg's COPY of
                          the same rows

The anchors: `benchmarks.crud_layer` is the persistence layer of the document (eight tables,
SQLAlchemy ORM sessions, pydantic DTOs, a commit per call) as a user would write it, ending in
the same eight tables as the store (tests/test_benchmarks.py checks this); `benchmarks.peer`
is the `eventsourcing` library (the `bench` extra), which keeps no read models of its own: the
"+ AES" anchor turns on its cipher (one key for every event, where the store keeps one per
learner in a key store), and "+ AES + 8 tables" adds what a user of the library would write to
keep the document's tables (statements built once, one transaction per save).

`benchmarks.floor` is the checked floor: it writes the store's very rows (the same tables, the
same ciphertext format and chain; the store reads back, verifies and rebuilds what it writes),
so "ours / floor" is what the store costs beyond the work every event needs. It imports nothing
from the tree under test but the workload, so under --compare it is the same in both trees: it
runs in each tree's turn like the other anchors, each tree's ratio dividing by the floor
measured beside it, and its own after/before shows the run's noise.

Every measurement runs in its own child process (`benchmarks.measure`), in rounds (`--rounds`,
default 3) that alternate between implementations, and the median over the rounds is
reported. `--compare PATH` runs every measurement for another checkout too, alternating per
measurement (this tree, then the other), each child's PYTHONPATH putting its tree first.

Reading the ratios: rates are per second, so "ours / anchor" above 1 means the store is
faster than the anchor, below 1 slower; for times (the audit reads, in ms) "ours / checked
floor" above 1 means the store takes longer. "after / before" divides this tree's median by the
--compare tree's: above 1 is better for per-second rates, below 1 is better for ms and MB.
Ratios from one run of a noisy machine move by several percent; anchors measured in both trees
(they do not depend on the tree) show how much.

From the tree under test the bench uses only `dala_events.database_setup.create_dala_engine`,
`create_tables` and `store_for`; `dala_events.hlp_module.LearnerProfile` (its mutation methods
and save), `PREDEFINED_INTERESTS` and `PREDEFINED_STRUGGLE_AREAS`;
`dala_events.assessment.DIAGNOSTIC_TASKS`; `projections.rebuild.rebuild_projections`; and
`dala_events.audit.history` and `profile_as_of`. The PostgreSQL group also opens
`dala_events.app.Dala` (and its `restore`) with `dala_events.settings.Settings`, and backs up
with `dala_events.backup.backup_log`.
"""
