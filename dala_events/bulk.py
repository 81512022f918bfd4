"""Pausing Python's cyclic garbage collector while the store builds many objects at once.

Reading a long history, an as-of view or a rebuild batch creates tens of thousands of small
objects (rows, events, dicts) that all stay alive until the work is done. CPython starts a
cyclic collection every few hundred new container objects and, as the survivors pile up,
walks them again and again: on a rebuild that is over a third of the run time, and none of it
frees anything, because these objects hold no reference cycles (reference counting frees them
the moment they are dropped).

`bulk_allocation()` switches the cyclic collector off for the duration of such work and back
on afterwards. The collector is process-wide, so the pause is counted: nested and concurrent
pauses (several threads reading histories) keep it off until the last one ends, and it is only
switched back on if it was on when the first one began. Set `DALA_PAUSE_GC=0` to never pause it.

Switching it back on alone would still cost one walk over everything built meanwhile: the next
allocation finds the youngest generation tens of thousands of objects over its threshold and
examines them all (measured: 2 to 5 ms of a 25 to 30 ms history read). So when a pause that
built many objects ends, the young objects are handed to the oldest generation as they are,
with `gc.freeze()` then `gc.unfreeze()` (two list splices, whatever their length); the
collector sees them again in the next full collection, by which time the caller has usually
dropped them.

What is handed over unexamined may include garbage cycles: ones the application made just
before the pause, or other threads made during it. Python starts full collections by its own
rule, which does not count objects handed over this way, so after every million of them a
full collection is run here (outside the lock), and such garbage stays bounded. A pause that
built fewer than ten thousand objects just switches the collector back on: walking them is
cheaper than all this. Nothing is handed over when something else keeps objects frozen (a
pre-fork server's `gc.freeze()`), so as not to thaw them.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HAND_OVER_FROM = 10_000
"""Young objects a pause must leave for them to be handed over rather than walked."""
FULL_COLLECTION_AFTER = 1_000_000
"""Objects handed over unexamined after which a full collection is run."""

_lock = threading.Lock()
_depth = 0
_was_enabled = False
_handed_over = 0


def pausing_enabled() -> bool:
    """Whether `bulk_allocation` pauses the collector (`DALA_PAUSE_GC`, default 1)."""
    return os.environ.get("DALA_PAUSE_GC", "1").strip().lower() not in ("0", "false", "no", "off")


@contextmanager
def bulk_allocation() -> Iterator[None]:
    """Keep the cyclic garbage collector off while the block runs (see the module docstring)."""
    global _depth, _was_enabled
    if not pausing_enabled():
        yield
        return
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        if _resume():
            # Outside the lock: finalizers run by the collection may start a pause of their own.
            gc.collect()


def _resume() -> bool:
    """End one pause; when it was the last, switch the collector back on (see the module
    docstring). Returns whether a full collection is due."""
    global _depth, _handed_over
    with _lock:
        _depth -= 1
        if _depth > 0 or not _was_enabled:
            return False
        young = gc.get_count()[0]
        due = False
        if young >= HAND_OVER_FROM and gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
            _handed_over += young
            if _handed_over >= FULL_COLLECTION_AFTER:
                _handed_over = 0
                due = True
        gc.enable()
        return due
