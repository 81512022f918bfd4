"""The one walk of the log's hash chains: what `dala verify` reports and what a rebuild refuses.

Chain rows (`codec.ChainRow`) are fed in position order. Each stream keeps only its chain's
tip and at most one undecided row, so memory is bounded by the number of streams, not events.
Every event that does not fit is a `Problem` of one of five kinds, told apart by which link
verifies:

- **changed**: its stored values no longer match its hash (the chain goes on from its stored
  hash, so one changed event is one problem); a renumbered version is a change too;
- **inserted**: a row that the chain runs past (the next event links to the one before it);
- **deleted**: versions missing from a stream (the next event's link cannot be checked);
- **reordered**: versions out of order by position (versions swapped between events);
- **moved**: an event that verifies only under another learner id, where that learner's
  stream has a hole (decided at `finish`, when every stream has been seen).

`feed` returns the rows whose link verified: what a rebuild may project. A rebuild feeds the
log in commit order (`store.sql.in_commit_order`), so a row that committed late behind newer
positions comes after its predecessor like any other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dala_events.store.codec import ChainRow, LogKey, hasher, link_of

MAX_LISTED_PROBLEMS = 1_000
"""Problems listed one by one; beyond these only their number by kind is kept."""
MAX_MOVE_TRIES = 1_000_000
"""Hashes tried at most when looking for where changed events came from."""
KINDS = ("changed", "inserted", "deleted", "reordered", "moved")


@dataclass
class Problem:
    """One event (or run of missing versions) that does not fit its stream's chain."""

    kind: str
    learner_id: str
    version: int
    position: int | None
    detail: str
    last_version: int | None = None
    """For deleted: the last missing version (`version` is the first)."""
    now_learner_id: str | None = None
    """For moved: the learner whose stream the event is stored in now."""
    row: ChainRow | None = field(default=None, repr=False, compare=False)
    previous: str = field(default="", repr=False, compare=False)
    renumbered: bool = field(default=False, repr=False, compare=False)
    dropped: bool = field(default=False, repr=False, compare=False)

    @property
    def versions(self) -> str:
        """ "3", or "3-5" for a run."""
        if self.last_version is None or self.last_version == self.version:
            return str(self.version)
        return f"{self.version}-{self.last_version}"

    def describe(self) -> str:
        """The problem in one line: learner, versions, position, kind and why."""
        where = "" if self.position is None else f" (log position {self.position})"
        versions = f"version {self.versions}" if "-" not in self.versions else f"versions {self.versions}"
        return f"learner {self.learner_id!r} {versions}{where}: {self.kind}: {self.detail}"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready record."""
        found: dict[str, Any] = {
            "kind": self.kind,
            "learner_id": self.learner_id,
            "version": self.version,
            "position": self.position,
            "detail": self.detail,
        }
        if self.last_version is not None:
            found["last_version"] = self.last_version
        if self.now_learner_id is not None:
            found["now_learner_id"] = self.now_learner_id
        return found


class Stream:
    """What the walk keeps of one stream: its chain's tip and what is still undecided."""

    __slots__ = (
        "events",
        "last_problem",
        "learner_id",
        "max_version",
        "pending",
        "prev",
        "stored_version",
        "version",
    )

    def __init__(self, learner_id: str) -> None:
        self.learner_id = learner_id
        self.prev = ""  # the stored hash the next event must link to
        self.version = 0  # the version the chain is at (the last accepted event's)
        self.stored_version = 0  # the version column of the last row seen
        self.max_version = 0
        self.events = 0
        self.pending: ChainRow | None = None  # a row that does not link, until the next row tells why
        self.last_problem: Problem | None = None


def _version(row: ChainRow) -> int:
    """The row's version; -1 (never valid) for anything but a whole number a hand stored there."""
    version = row.version
    return version if type(version) is int else -1


class ChainWalker:
    """Checks chain rows fed in position order; `finish()` decides what is still open."""

    def __init__(self, log_key: LogKey | None) -> None:
        self.digest = hasher(log_key)
        self.streams: dict[str, Stream] = {}
        self.problems: list[Problem] = []
        self.unlisted: dict[str, int] = {}
        self.events = 0
        self.verified = 0
        self._accepted: list[ChainRow] = []
        self._watched = type(self).seen is not ChainWalker.seen  # a subclass looks at every row

    def feed(self, rows: Iterable[ChainRow]) -> list[ChainRow]:
        """Check the next rows of the log (position order, or commit order); returns those whose
        link verified, in their order."""
        accepted = self._accepted = []
        streams, digest, watched = self.streams, self.digest, self._watched
        for row in rows:
            stream = streams.get(row.learner_id)
            if stream is None:
                stream = streams[row.learner_id] = Stream(row.learner_id)
            version = row.version
            if (
                version == stream.version + 1
                and stream.pending is None
                and not watched
                and type(version) is int
                and link_of(row, stream.prev, digest) == row.hash
            ):
                # The walk of almost every row (rebuilds walk them all): the next version of its
                # stream, linking to the one before. What `_walk` and `_check` would do, inline.
                self.events += 1
                self.verified += 1
                stream.events += 1
                stream.stored_version = stream.version = version
                stream.max_version = max(stream.max_version, version)
                stream.prev = row.hash
                accepted.append(row)
                continue
            self._walk(stream, row)
        return accepted

    def finish(self) -> list[Problem]:
        """Judge what still waits, decide what the walk left open, look for moved events;
        returns the problems, in log order."""
        for stream in self.streams.values():
            if stream.pending is not None:
                self._settle(stream, stream.pending, chained=False)
        self._find_moves()
        self.problems = sorted(
            (p for p in self.problems if not p.dropped),
            key=lambda p: (p.position is None, p.position or 0, p.learner_id, p.version),
        )
        return self.problems

    # -- one row ---------------------------------------------------------------------------

    def _walk(self, stream: Stream, row: ChainRow) -> None:
        self.events += 1
        if stream.pending is not None:
            self._decide_pending(stream, row)
        self._check(stream, row)
        self.seen(stream, row)

    def seen(self, stream: Stream, row: ChainRow) -> None:
        """Called for every row as it is walked (a checkpoint compares here)."""

    def _check(self, stream: Stream, row: ChainRow) -> None:
        version, stored_hash = _version(row), row.hash
        expected = stream.version + 1
        renumbered_down = 0 < version < stream.stored_version
        stream.stored_version = version
        stream.max_version = max(stream.max_version, version)
        stream.events += 1
        if link_of(row, stream.prev, self.digest) == stored_hash:
            self.verified += 1
            if version > expected:
                self.add(
                    stream,
                    "deleted",
                    row,
                    f"missing before position {row.position}; the chain was re-hashed over the gap",
                    version=expected,
                    last_version=version - 1,
                )
            elif version < expected:
                self.add(stream, "reordered", row, f"version {version} comes after version {stream.version}")
            self._accept(stream, row, max(version, stream.version))
            return
        if version != expected and link_of(row, stream.prev, self.digest, version=expected) == stored_hash:
            # Intact but for its version column: renumbered.
            earlier = stream.last_problem
            problem = self.add(
                stream,
                "reordered" if renumbered_down else "changed",
                row,
                f"written as version {expected}, stored as version {row.version!r}",
                version=expected,
            )
            if problem is not None:
                problem.renumbered = True
            if renumbered_down and earlier is not None and earlier.renumbered and earlier.kind == "changed":
                earlier.kind = "reordered"  # the renumbered event before this one was the other half of a swap
            self._accept(stream, row, expected)
            return
        stream.pending = row

    def _decide_pending(self, stream: Stream, row: ChainRow) -> None:
        pending = stream.pending
        assert pending is not None
        stream.pending = None
        if link_of(row, pending.hash, self.digest) == row.hash:
            self._settle(stream, pending, chained=True)  # the next event links to it: it is in the chain
        elif link_of(row, stream.prev, self.digest) == row.hash:
            self.add(stream, "inserted", pending, "the chain runs past it: the next event links to the one before")
        else:
            self._settle(stream, pending, chained=False)

    def _settle(self, stream: Stream, row: ChainRow, *, chained: bool) -> None:
        """A row that does not link to its predecessor, with what came after it known."""
        stream.pending = None
        version, expected = _version(row), stream.version + 1
        if version == expected:
            self.add(stream, "changed", row, "its stored values do not match its hash")
        elif version > expected:
            self.add(
                stream,
                "deleted",
                row,
                f"missing before position {row.position}",
                version=expected,
                last_version=version - 1,
            )
        elif chained:
            self.add(
                stream,
                "changed",
                row,
                f"its stored values do not match its hash (version {version} where {expected} was due)",
            )
            stream.prev, stream.version = row.hash, expected
            return
        else:
            self.add(stream, "inserted", row, f"version {version} again, after version {stream.version}")
            return
        stream.prev, stream.version = row.hash, max(version, stream.version)

    def _accept(self, stream: Stream, row: ChainRow, version: int) -> None:
        stream.prev = row.hash
        stream.version = version
        self._accepted.append(row)

    def add(
        self,
        stream: Stream,
        kind: str,
        row: ChainRow,
        detail: str,
        *,
        version: int | None = None,
        last_version: int | None = None,
    ) -> Problem | None:
        """Record a problem of `row` in `stream` (only counted beyond MAX_LISTED_PROBLEMS)."""
        if len(self.problems) >= MAX_LISTED_PROBLEMS:
            self.unlisted[kind] = self.unlisted.get(kind, 0) + 1
            stream.last_problem = None
            return None
        problem = Problem(
            kind,
            stream.learner_id,
            (_version(row) if _version(row) > 0 else stream.version + 1) if version is None else version,
            row.position,
            detail,
            last_version=last_version,
            row=row,
            previous=stream.prev,
        )
        self.problems.append(problem)
        stream.last_problem = problem
        return problem

    # -- after the walk --------------------------------------------------------------------

    def _find_moves(self) -> None:
        """Explain holes in one stream by events stored under another learner that verify, with
        that stream's id, exactly where the hole is; and events at another stream's end."""
        problems = [p for p in self.problems if not p.dropped]
        suspects: dict[int, list[Problem]] = {}
        for problem in problems:
            if problem.row is not None and problem.kind != "moved":
                suspects.setdefault(_version(problem.row), []).append(problem)
        if not suspects:
            return
        tries = 0
        for gap in [p for p in problems if p.kind == "deleted" and p.row is not None]:
            if gap.dropped:
                continue
            assert gap.row is not None
            previous, version, last = gap.previous, gap.version, gap.last_version or gap.version
            while version <= last:
                found = None
                for suspect in suspects.get(version, ()):
                    row = suspect.row
                    assert row is not None
                    if suspect.dropped or row.learner_id == gap.learner_id or suspect is gap:
                        continue
                    tries += 1
                    if link_of(row, previous, self.digest, learner_id=gap.learner_id) == row.hash:
                        found = suspect
                        break
                if found is None or tries > MAX_MOVE_TRIES:
                    break
                self._moved(found, gap.learner_id)
                assert found.row is not None
                previous, version = found.row.hash, version + 1
            if version > last:
                gap.dropped = True
                after = gap.row
                # The event after the hole, unchecked until now: it must link to the last moved one.
                if link_of(after, previous, self.digest) != after.hash:
                    self.problems.append(
                        Problem(
                            "changed", gap.learner_id, after.version, after.position, "its stored values do not match"
                        )
                    )
            elif version > gap.version:
                gap.version = version
        # Events taken from the end of a stream: no hole shows there.
        wanted = {v - 1 for v, candidates in suspects.items() if any(not s.dropped for s in candidates)}
        ends: dict[int, list[Stream]] = {}
        for stream in self.streams.values():
            if stream.version in wanted:
                ends.setdefault(stream.version, []).append(stream)
        for version, candidates in sorted(suspects.items()):
            for suspect in candidates:
                row = suspect.row
                if suspect.dropped or row is None:
                    continue
                for stream in ends.get(version - 1, ()):
                    if stream.learner_id == row.learner_id or tries > MAX_MOVE_TRIES:
                        continue
                    tries += 1
                    if link_of(row, stream.prev, self.digest, learner_id=stream.learner_id) == row.hash:
                        self._moved(suspect, stream.learner_id)
                        break

    def _moved(self, suspect: Problem, from_learner: str) -> None:
        row = suspect.row
        assert row is not None
        suspect.dropped = True
        for other in self.problems:
            # A hole the moved event made in the stream it landed in is no hole.
            if other.row is row and other is not suspect:
                other.dropped = True
        self.problems.append(
            Problem(
                "moved",
                from_learner,
                row.version,
                row.position,
                f"stored under learner {row.learner_id!r}; it verifies only as learner {from_learner!r}'s",
                now_learner_id=row.learner_id,
                row=row,
            )
        )
