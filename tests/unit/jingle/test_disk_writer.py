"""The received-data writer thread: order, hash, backpressure, errors, abort."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from libervia.backend.plugins.plugin_xep_0234 import writer as writer_module
from libervia.backend.plugins.plugin_xep_0234.writer import DiskWriter
from tests.conftest import aio


@aio
async def test_chunks_written_and_hashed_in_order(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(writer_module, "MAX_PENDING", 3)  # backpressure exercised
    chunks = [bytes([n]) * (1000 + n) for n in range(200)]
    hasher = hashlib.sha256()
    with (tmp_path / "out").open("wb") as f:
        writer = DiskWriter(f, lambda: hasher)
        for chunk in chunks:
            await writer.write(chunk)
            assert writer.pending <= 3
        await writer.finish()
        assert writer.finished
    data = b"".join(chunks)
    assert (tmp_path / "out").read_bytes() == data
    assert hasher.digest() == hashlib.sha256(data).digest()


@aio
async def test_write_error_reported(tmp_path: Path) -> None:
    class Full:
        def write(self, data: bytes) -> None:
            raise OSError(28, "No space left on device")

    writer = DiskWriter(Full(), lambda: None)  # type: ignore[arg-type]
    await writer.write(b"x")
    with pytest.raises(OSError, match="No space"):
        await writer.finish()
    with pytest.raises(OSError):
        await writer.write(b"y")


@aio
async def test_abort_drops_the_rest(tmp_path: Path) -> None:
    written: list[bytes] = []

    class Recorder:
        def write(self, data: bytes) -> None:
            written.append(data)

    writer = DiskWriter(Recorder(), lambda: None)  # type: ignore[arg-type]
    writer.abort()
    await writer.write(b"late")  # queued after the end: never written
    await writer.finish()
    assert written == [] and writer.finished
