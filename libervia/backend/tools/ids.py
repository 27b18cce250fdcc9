"""Identifiers."""

from __future__ import annotations

import os
import time
import uuid


def time_ordered_uuid(now: float | None = None) -> str:
    """A UUID version 7 (RFC 9562): 48-bit Unix time in ms, then 74 random bits.

    Identifiers made later sort after earlier ones, so that rows keyed by them are appended at
    the end of their index instead of scattered over it (much faster inserts into large tables).
    """
    ms = int((time.time() if now is None else now) * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64 | (0b10 << 62)
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))
