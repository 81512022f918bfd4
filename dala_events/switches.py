"""How a yes/no setting reads: one rule for every `DALA_*` switch, wherever it is read."""

from __future__ import annotations

from dala_events.errors import InvalidInput

ON = ("1", "true", "yes", "on")
OFF = ("0", "false", "no", "off")


def switch(name: str, value: str) -> bool | None:
    """The switch `name` set to `value`: True for 1/true/yes/on, False for 0/false/no/off (any
    case, surrounding spaces ignored), None when empty (the switch's default applies).

    Anything else is InvalidInput naming `name`: a typo must never turn a check off, or on.
    """
    word = value.strip().lower()
    if word in ON:
        return True
    if word in OFF:
        return False
    if word:
        raise InvalidInput(name, f"must be 1 or 0 (or true/false, yes/no, on/off), not {value.strip()!r}")
    return None
