"""Read models kept in memory: the projectors' target beside the in-memory event store.

`MemoryReadModels.project` is an inline projection for `InMemoryEventStore`: the same
projectors as the SQL read models, writing rows into dictionaries keyed by each read model's
natural key. Unit tests of projectors and of the aggregate run on it without a database.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from dala_events.envelopes import ProjectableEvent
from projections.database_models import PARENT, READ_MODELS, SECTIONS
from projections.dtos import FullLearnerProfileData
from projections.profiles import build_profile
from projections.projectors import Row, RowChanges, apply_events


class MemoryReadModels:
    """The eight read models as dictionaries; a `RowWriter` and an inline projection."""

    def __init__(self) -> None:
        self.names: frozenset[str] = frozenset(model.name for model in READ_MODELS)
        self._keys = {model.name: model.natural_key for model in READ_MODELS}
        self._insert_only = {model.name for model in READ_MODELS if model.insert_only}
        self._tables: dict[str, dict[Any, Row]] = {name: {} for name in self._keys}
        self._ids = itertools.count(1)

    def project(self, events: Iterable[ProjectableEvent]) -> None:
        """Bring the read models up to date with `events` (the in-memory store's inline projector)."""
        changes = RowChanges(self)
        apply_events(changes, events)
        changes.flush()

    def rows(self, name: str) -> list[Row]:
        """Copies of the rows of read model `name`, in the order they were first written."""
        return [dict(row) for row in self._tables[name].values()]

    def learner_rows(self, learner_id: str) -> dict[str, list[Row]]:
        """Every read model's rows of one learner (empty lists where it has none)."""
        column = {name: "id" if name == PARENT else "learner_id" for name in self._tables}
        return {
            name: [dict(row) for row in table.values() if row[column[name]] == learner_id]
            for name, table in self._tables.items()
        }

    def profile(self, learner_id: str) -> FullLearnerProfileData | None:
        """The learner's whole profile, as the SQL getters would read it from the same rows
        (each section in its declared order), or None if there is none."""
        header = self._tables[PARENT].get((learner_id,))
        if header is None:
            return None
        sections = {}
        for section, model in SECTIONS.items():
            mine = [row for row in self._tables[model.name].values() if row["learner_id"] == learner_id]
            mine.sort(key=lambda row: tuple(row[column] for column in model.order))
            sections[section] = [{name: value for name, value in row.items() if name != "id"} for row in mine]
        return build_profile(header, sections)

    # -- RowWriter -------------------------------------------------------------------------

    def upsert(self, name: str, rows: list[Row]) -> None:
        """See `projections.projectors.RowWriter`."""
        table = self._tables[name]
        for row in rows:
            key = tuple(row[column] for column in self._keys[name])
            if name == PARENT:
                table[key] = {**row}
            else:  # an update keeps the row's surrogate id, as ON CONFLICT DO UPDATE does
                existing = table.get(key)
                table[key] = {"id": existing["id"] if existing else next(self._ids), **row}

    def delete(self, name: str, keys: list[Row]) -> None:
        """See `projections.projectors.RowWriter`."""
        table = self._tables[name]
        for key in keys:
            table.pop(tuple(key[column] for column in self._keys[name]), None)

    def insert(self, name: str, rows: list[Row]) -> None:
        """See `projections.projectors.RowWriter`."""
        table = self._tables[name]
        for row in rows:
            row_id = next(self._ids)
            table[row_id] = {"id": row_id, **row}

    def touch(self, moments: Mapping[str, datetime]) -> None:
        """See `projections.projectors.RowWriter`."""
        profiles = self._tables[PARENT]
        for learner_id, at in moments.items():
            profile = profiles.get((learner_id,))
            if profile is not None:
                profile["last_updated_at"] = at

    def delete_learner(self, learner_id: str) -> None:
        """See `projections.projectors.RowWriter`."""
        for name, table in self._tables.items():
            column = "id" if name == PARENT else "learner_id"
            for key in [key for key, row in table.items() if row[column] == learner_id]:
                del table[key]
