"""Time-sortable ids (UUIDv7 text) and UTC timestamps."""

from __future__ import annotations

import os
import random
import threading
import time
from datetime import datetime, timezone

_lock = threading.Lock()
_last_ms = 0
_seq = 0
# Ids need uniqueness, not secrecy: a seeded-from-urandom PRNG is 10x cheaper than os.urandom.
_rand = random.Random(os.urandom(16))


def new_id() -> str:
    """Return a UUIDv7 string; ids made in one process sort by creation order."""
    global _last_ms, _seq
    ms = time.time_ns() // 1_000_000
    with _lock:
        if ms <= _last_ms:
            # Same (or earlier, after a clock step) millisecond: keep order with a counter.
            ms = _last_ms
            _seq += 1
            if _seq > 0xFFF:
                ms += 1
                _seq = 0
        else:
            _seq = 0
        _last_ms = ms
        seq = _seq
    rand = _rand.getrandbits(62)
    h = f"{ms:012x}7{seq:03x}{(rand | 0x8000000000000000):016x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def utc_now() -> str:
    """The current UTC time as ISO 8601 text with microseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def utc_from_epoch(seconds: float) -> str:
    """ISO 8601 UTC text for a Unix time."""
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="microseconds")


def _reseed_after_fork() -> None:
    _rand.seed(os.urandom(16))


os.register_at_fork(after_in_child=_reseed_after_fork)
