"""The projections: which read-model tables exist, how they depend on each other, their fingerprints.

Each of the eight read-model tables is one projection, named after its table. The seven child
tables hold a foreign key to `learner_profiles`, so rebuilding `learner_profiles` rebuilds
them all; a child table can be rebuilt on its own.

A projection's *fingerprint* is a hash of its table definition in code (columns, types,
nullability, keys, constraints, indexes) as the database's dialect spells them. The
bookkeeping table `projection_state` remembers the fingerprint each table was last built
with, so a changed definition is noticed at start-up instead of failing on the first write.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import Dialect, ForeignKeyConstraint, Index, Table, UniqueConstraint

from dala_events.errors import InvalidInput
from projections.database_models import PARENT, READ_MODELS

__all__ = ["PARENT", "fingerprint", "projection_names", "read_model_tables", "with_dependents"]


def read_model_tables() -> dict[str, Table]:
    """The eight read-model tables by name, parent first."""
    return {model.name: model.table for model in READ_MODELS}


def projection_names() -> tuple[str, ...]:
    """Every projection's name, parent first."""
    return tuple(read_model_tables())


def with_dependents(names: Iterable[str]) -> tuple[str, ...]:
    """`names` plus what must be rebuilt with them, in table order (parent first).

    Raises InvalidInput naming the field `projection` for a name that is not a projection.
    """
    known = projection_names()
    wanted = set()
    for name in names:
        if name not in known:
            raise InvalidInput("projection", f"unknown projection {name!r}; known: {', '.join(known)}")
        wanted.add(name)
    if PARENT in wanted:
        # The children's foreign keys point at the parent table: they are replaced together.
        wanted.update(known)
    return tuple(name for name in known if name in wanted)


def fingerprint(table: Table, dialect: Dialect) -> str:
    """A short hash of `table`'s definition as `dialect` would create it."""
    parts: list[str] = [f"table {table.name}"]
    for column in table.columns:
        targets = ",".join(sorted(key.target_fullname for key in column.foreign_keys))
        parts.append(
            f"column {column.name} {column.type.compile(dialect=dialect)} "
            f"nullable={column.nullable} pk={column.primary_key} fk={targets}"
        )
    for constraint in sorted(table.constraints, key=_constraint_key):
        if isinstance(constraint, UniqueConstraint | ForeignKeyConstraint):
            parts.append(_constraint_key(constraint))
    for index in sorted(table.indexes, key=lambda index: str(index.name)):
        parts.append(_index_key(index))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _constraint_key(constraint: object) -> str:
    columns = ",".join(column.name for column in getattr(constraint, "columns", ()))
    return f"{type(constraint).__name__} {columns}"


def _index_key(index: Index) -> str:
    return f"index {index.name} unique={index.unique} {','.join(column.name for column in index.columns)}"
