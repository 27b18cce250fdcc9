"""tools.ids: time-ordered UUIDs."""

import uuid

from libervia.backend.tools.ids import time_ordered_uuid


def test_valid_version_7() -> None:
    """The result is a valid RFC 9562 version 7 UUID."""
    value = uuid.UUID(time_ordered_uuid())
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


def test_ordered_by_time_and_unique() -> None:
    """Later timestamps sort after earlier ones; the same millisecond still gives unique ids."""
    ids = [time_ordered_uuid(1_700_000_000 + i / 1000) for i in range(1000)]
    assert ids == sorted(ids)
    same = {time_ordered_uuid(1_700_000_000.0) for _ in range(1000)}
    assert len(same) == 1000
    assert int(uuid.UUID(ids[0]).hex[:12], 16) == 1_700_000_000_000
