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
examines them all (8 ms of a 30 ms history read). So when the pause ends, the tracked objects
are moved to the oldest generation as they are, with `gc.freeze()` then `gc.unfreeze()` (two
list splices, whatever their length), and the collector sees them again only in a full
collection, by which time the caller has usually dropped them. So that this hands over only
what the pause built, and not garbage cycles the application made before it (which would then
wait for a full collection), the young generations are collected when a pause begins: they
hold at most a few thousand objects. Cycles other threads drop while a pause runs do reach the
oldest generation. All of this is skipped when something else keeps objects frozen (a pre-fork
server's `gc.freeze()`), so as not to thaw them; the collector is then simply switched back on.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


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
    if gc.isenabled() and gc.get_freeze_count() == 0:
        # Outside the lock: finalizers run by the collection may start a pause of their own.
        gc.collect(1)
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                if gc.get_freeze_count() == 0:
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()
