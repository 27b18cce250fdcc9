"""The received-data writer thread: order, hash, backpressure, errors, abort."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import threading
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


class Gated:
    """A file whose writes wait for ``gate`` (the writer thread is held)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.gate.wait(10)
        self.data += data


@aio
async def test_lent_buffers_come_back_once_written_and_hashed(monkeypatch) -> None:
    """A buffer lent to the transport is not lent again while its bytes wait to be
    written and hashed (the transport would overwrite them); once they are, it is (no
    new buffer allocated per chunk)."""
    monkeypatch.setattr(writer_module, "MAX_PENDING", 1)  # write() returns once room
    file = Gated()
    hasher = hashlib.sha256()
    writer = DiskWriter(file, lambda: hasher)  # type: ignore[arg-type]
    first = writer.buffer(4)
    assert first is not None
    first[:] = b"abcd"
    await writer.write(first[:2])  # a buffer may come back in several chunks
    second = writer.buffer(4)  # "ab" is held by the writer thread
    assert second is not None and second.obj is not first.obj
    asyncio.get_running_loop().call_soon(file.gate.set)
    await writer.write(first[2:])  # returns once "ab" is written and hashed
    second[:] = b"END!"
    await writer.write(second)  # ... once "cd" is
    third = writer.buffer(4)
    assert third is not None and third.obj is first.obj
    await writer.finish()
    assert bytes(file.data) == b"abcdEND!"
    assert hasher.digest() == hashlib.sha256(b"abcdEND!").digest()
    assert writer.buffer(4) is None  # finished: nothing more lent


@aio
async def test_lending_stops_when_buffers_do_not_come_back(monkeypatch) -> None:
    """A transport that does not give the lent buffers back (not the contract) gets no
    more than MAX_LENT of them, then None (it uses its own)."""
    monkeypatch.setattr(writer_module, "MAX_LENT", 3)
    writer = DiskWriter(Gated(), lambda: None)  # type: ignore[arg-type]
    assert all(writer.buffer(8) is not None for _ in range(3))
    assert writer.buffer(8) is None
    writer.abort()
    await writer.finish()


def test_reserve_allocates_or_reports_a_full_disk(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "f.part"
    with path.open("wb") as f:
        writer_module.reserve(f.fileno(), 12345)
        assert os.fstat(f.fileno()).st_size == 12345

        def full(fd: int, offset: int, size: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "posix_fallocate", full)
        with pytest.raises(OSError, match="No space"):
            writer_module.reserve(f.fileno(), 10)

        def unsupported(fd: int, offset: int, size: int) -> None:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")

        monkeypatch.setattr(os, "posix_fallocate", unsupported)
        writer_module.reserve(f.fileno(), 10)  # not an error: nothing reserved
        copy = os.dup(f.fileno())
        writer_module.reserve(copy, 10, close=True)
        with pytest.raises(OSError):
            os.fstat(copy)


def test_move_into_place_over_the_placeholder(tmp_path: Path, monkeypatch) -> None:
    """The placeholder is replaced by the received file (the same inode: linked, not
    copied; no rename over an existing file), the partial name is gone; without hard
    links the name is reserved again and the file renamed over that reservation; asked to
    overwrite, the file is renamed over the existing one."""
    partial, final = tmp_path / "a.part", tmp_path / "a"
    partial.write_bytes(b"data")
    final.touch()
    inode = partial.stat().st_ino
    renames: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def replace(src: Path, dst: Path) -> None:
        renames.append((src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    assert writer_module.move_into_place(partial, final, placeholder=True) == final
    assert final.read_bytes() == b"data" and final.stat().st_ino == inode
    assert not partial.exists() and renames == []

    def no_links(src: Path, dst: Path) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    final.write_bytes(b"")  # a new placeholder of ours
    partial.write_bytes(b"other")
    assert writer_module.move_into_place(partial, final, placeholder=True) == final
    assert final.read_bytes() == b"other" and not partial.exists()
    assert renames == [(partial, final)]
    # overwrite asked (no placeholder): the existing file is replaced atomically
    partial.write_bytes(b"third")
    assert writer_module.move_into_place(partial, final, placeholder=False) == final
    assert final.read_bytes() == b"third" and len(renames) == 2


def test_move_into_place_never_overwrites_a_file_created_meanwhile(
    tmp_path: Path, monkeypatch
) -> None:
    """Between the placeholder's removal and the link, another program creates a file of
    that name: it is kept, the received file takes the next free name."""
    partial, final = tmp_path / "a.part", tmp_path / "report.pdf"
    partial.write_bytes(b"received")
    final.touch()
    real_link = os.link

    def racing_link(src: Path, dst: Path) -> None:
        Path(dst).write_bytes(b"somebody else's")
        real_link(src, dst)  # FileExistsError, as the kernel says

    monkeypatch.setattr(os, "link", racing_link)
    got = writer_module.move_into_place(partial, final, placeholder=True)
    assert got == tmp_path / "report (1).pdf"
    assert final.read_bytes() == b"somebody else's"
    assert got.read_bytes() == b"received" and not partial.exists()


@aio
async def test_file_sink_lends_buffers_for_big_files_only(tmp_path: Path) -> None:
    """FileSink.receive_buffer: None for a file of unknown size or small enough to be
    written on the loop (the transport keeps its own buffers); for a big one, the writer's
    buffers, and the bytes received in them are written and hashed."""
    from types import SimpleNamespace

    from libervia.backend.plugins.plugin_xep_0234.description import FileInfo
    from libervia.backend.plugins.plugin_xep_0234.transfer import INLINE_BYTES, FileSink, Transfer

    def sink_for(size: int | None) -> tuple[FileSink, Transfer]:
        transfer = Transfer("in", FileInfo(size=size), "p", 0.0)
        transfer.file = (tmp_path / f"{size}.part").open("wb")
        transfer.hasher = hashlib.sha256()
        content = SimpleNamespace(app_data=transfer)
        app = SimpleNamespace(plugin=SimpleNamespace(max_size=1 << 40))
        return FileSink(app, None, None, content), transfer  # type: ignore[arg-type]

    for size in (None, 10, INLINE_BYTES):
        sink, transfer = sink_for(size)
        assert sink.receive_buffer(4096) is None and transfer.writer is None
        transfer.file.close()  # type: ignore[union-attr]
    size = INLINE_BYTES + 4096
    sink, transfer = sink_for(size)
    data = os.urandom(size)
    position = 0
    while position < size:
        buffer = sink.receive_buffer(65536)
        assert buffer is not None
        count = min(len(buffer), size - position)
        buffer[:count] = data[position : position + count]
        await sink.write(buffer[:count])  # type: ignore[arg-type]
        position += count
    assert transfer.writer is not None
    await transfer.writer.finish()
    transfer.file.close()  # type: ignore[union-attr]
    assert (tmp_path / f"{size}.part").read_bytes() == data
    assert transfer.hasher.digest() == hashlib.sha256(data).digest()
