"""File metadata, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from twisted.words.protocols.jabber.jid import JID

from libervia.backend.core.exceptions import InvalidInput, NotFound
from libervia.backend.memory.sqla import Storage
from libervia.backend.memory.sqla_mapping import FileType
from libervia.backend.tools.xml import parse
from tests.conftest import aio


@aio
async def test_set_and_get_files(storage: Storage) -> None:
    """Every stored field reads back; each filter selects what it should."""
    await storage.create_profile("alice")
    owner = JID("alice@example.org/laptop")
    dir_id = await storage.set_file("alice", "photos", type_=FileType.DIRECTORY, owner=owner)
    file_id = await storage.set_file(
        "alice",
        "été.jpg",
        parent=dir_id,
        file_hash="abc123",
        hash_algo="sha-256",
        size=2048,
        namespace="jingle",
        media_type="image",
        media_subtype="jpeg",
        created=1000.0,
        modified=1001.0,
        owner=owner,
        access={"read": {"type": "public"}},
        extra={"description": "holidays"},
    )
    await storage.set_file("alice", "other.txt", size=1, created=2000.0)
    (f,) = await storage.get_files("alice", file_id=file_id)
    assert (f.name, f.parent, f.type, f.size) == ("été.jpg", dir_id, FileType.FILE, 2048)
    assert (f.file_hash, f.hash_algo, f.namespace) == ("abc123", "sha-256", "jingle")
    assert (f.media_type, f.media_subtype, f.created, f.modified) == (
        "image",
        "jpeg",
        1000.0,
        1001.0,
    )
    assert f.owner == owner
    assert f.access == {"read": {"type": "public"}}
    assert f.extra == {"description": "holidays"}
    assert [x.id for x in await storage.get_files("alice", parent=dir_id)] == [file_id]
    assert [x.name for x in await storage.get_files("alice", type_="directory")] == ["photos"]
    assert [x.id for x in await storage.get_files("alice", file_hash="abc123")] == [file_id]
    assert [x.id for x in await storage.get_files("alice", owner=owner, media_type="image")] == [
        file_id
    ]
    assert [x.name for x in await storage.get_files("alice", limit=2)] == ["été.jpg", "other.txt"]
    assert await storage.get_files("alice", name="missing") == []


@aio
async def test_invalid_files(storage: Storage) -> None:
    """Empty name, negative size and half a hash are refused."""
    await storage.create_profile("alice")
    with pytest.raises(InvalidInput):
        await storage.set_file("alice", "")
    with pytest.raises(InvalidInput):
        await storage.set_file("alice", "x", size=-1)
    with pytest.raises(InvalidInput):
        await storage.set_file("alice", "x", file_hash="abc")
    assert await storage.get_files("alice") == []


@aio
async def test_file_update_is_atomic(storage: Storage) -> None:
    """Concurrent updates of a JSON column are serialised: none is lost."""
    await storage.create_profile("alice")
    file_id = await storage.set_file("alice", "shared.txt", extra={"downloads": []})

    def add(n: int):
        def update(extra: dict) -> None:
            extra["downloads"].append(n)

        return update

    await asyncio.gather(*(storage.file_update(file_id, "extra", add(n)) for n in range(40)))
    (f,) = await storage.get_files("alice", file_id=file_id)
    assert sorted(f.extra["downloads"]) == list(range(40))
    # returning a new value works too, and access can be updated
    new = await storage.file_update(file_id, "access", lambda access: {"read": "all"})
    assert new == {"read": "all"}
    (f,) = await storage.get_files("alice", file_id=file_id)
    assert f.access == {"read": "all"}
    with pytest.raises(InvalidInput):
        await storage.file_update(file_id, "name", lambda v: None)
    with pytest.raises(NotFound):
        await storage.file_update("missing", "extra", lambda v: None)


@aio
async def test_file_delete_and_used_space(storage: Storage) -> None:
    """Used space sums file sizes (per owner, by bare JID); deleting frees it."""
    await storage.create_profile("alice")
    alice = JID("alice@example.org")
    ids = [
        await storage.set_file("alice", "a", size=100, owner=JID("alice@example.org/laptop")),
        await storage.set_file("alice", "b", size=50, owner=alice),
        await storage.set_file("alice", "c", size=7, owner=JID("bob@example.org/x")),
        # a look-alike owner must not be counted (LIKE wildcards are escaped)
        await storage.set_file("alice", "d", size=1000, owner=JID("alice_example.org@x.org")),
    ]
    await storage.set_file("alice", "dir", type_="directory", owner=alice)
    assert await storage.file_get_used_space("alice", alice) == 150
    assert await storage.file_get_used_space("alice", JID("alice@example.org/other")) == 150
    assert await storage.file_get_used_space("alice") == 1157
    await storage.file_delete(ids[0])
    assert await storage.file_get_used_space("alice", alice) == 50
    with pytest.raises(NotFound):
        await storage.file_delete(ids[0])


@aio
async def test_non_json_values_are_invalid_input(storage: Storage) -> None:
    """Values that cannot be stored as JSON give InvalidInput, and nothing is written."""
    await storage.create_profile("alice")
    with pytest.raises(InvalidInput, match="JSON"):
        await storage.set_file("alice", "x", extra={"when": object()})
    with pytest.raises(InvalidInput):
        await storage.set_private_value("ns", "k", {1, 2}, profile="alice")
    node = await storage.set_pubsub_node("alice", JID("pubsub.example.org"), "n")
    with pytest.raises(InvalidInput):
        await storage.cache_pubsub_items(node, [parse('<item id="1"/>')], [{"x": object()}])
    assert await storage.get_files("alice") == []
    assert await storage.get_privates("ns", profile="alice") == {}
    assert (await storage.get_items(node))[0] == []
