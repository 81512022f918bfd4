"""Read-model rows -> the profile's DTOs: one builder for the SQL getters and the in-memory read models.

Rows arrive as mappings of column to value (the surrogate `id` left out), each section's rows
in its declared order. They are validated into the DTOs by pydantic with the `STORED`
context (stored JSON details are not measured again): a row the projectors could not have
written fails loudly instead of reaching a caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter

from dala_events.events import STORED
from projections.database_models import SECTIONS
from projections.dtos import FullLearnerProfileData


def _adapter(dto: type[BaseModel] | None) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[dto])  # type: ignore[valid-type]


_SECTION_ADAPTERS: dict[str, TypeAdapter[list[Any]]] = {
    section: _adapter(model.dto) for section, model in SECTIONS.items()
}


def section_rows(section: str, rows: Iterable[Mapping[str, Any]]) -> list[BaseModel]:
    """The DTOs of one profile section's rows, in the order given."""
    result: list[BaseModel] = _SECTION_ADAPTERS[section].validate_python(list(rows), context=STORED)
    return result


def build_profile(
    header: Mapping[str, Any], sections: Mapping[str, Iterable[Mapping[str, Any]]]
) -> FullLearnerProfileData:
    """The whole profile from its learner_profiles row and every section's rows."""
    return FullLearnerProfileData.model_validate(
        {
            "learner_id": header["id"],
            "created_at": header["created_at"],
            "last_updated_at": header["last_updated_at"],
            **{section: list(sections.get(section, ())) for section in SECTIONS},
        },
        context=STORED,
    )
