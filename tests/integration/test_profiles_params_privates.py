"""Profiles, parameters and private values, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from twisted.words.protocols.jabber.jid import JID

from libervia.backend.core.exceptions import (
    DatabaseError,
    InvalidInput,
    NotFound,
    ProfileExistsError,
    ProfileUnknownError,
)
from libervia.backend.memory.sqla import HistoryMessage, Storage
from libervia.backend.tools.xml import parse
from tests.conftest import aio


@aio
async def test_profiles(storage: Storage) -> None:
    """Create, list, check, component entry points, and delete profiles."""
    await storage.create_profile("bob")
    await storage.create_profile("alice")
    await storage.create_profile("files", component_ep="file_sharing")
    assert storage.get_profiles_list() == ["alice", "bob", "files"]
    assert storage.has_profile("alice") and not storage.has_profile("carol")
    assert not storage.profile_is_component("alice")
    assert storage.profile_is_component("files")
    assert storage.get_entry_point("files") == "file_sharing"
    with pytest.raises(NotFound):
        storage.get_entry_point("alice")
    with pytest.raises(ProfileExistsError):
        await storage.create_profile("alice")
    await storage.delete_profile("files")
    assert storage.get_profiles_list() == ["alice", "bob"]
    with pytest.raises(ProfileUnknownError):
        await storage.delete_profile("files")
    with pytest.raises(ProfileUnknownError):
        storage.profile_is_component("files")


@pytest.mark.parametrize("name", ["", " alice", "alice ", "@DEFAULT@", "a\nb"])
@aio
async def test_invalid_profile_names(storage: Storage, name: str) -> None:
    """Empty, padded, reserved ("@...") and control-character names are refused."""
    with pytest.raises(InvalidInput):
        await storage.create_profile(name)
    assert storage.get_profiles_list() == []


@aio
async def test_profiles_survive_restart(storage: Storage) -> None:
    """Profiles are read back from the database by a new Storage."""
    await storage.create_profile("alice")
    await storage.create_profile("files", component_ep="file_sharing")
    other = Storage(storage.db_url)
    await other.initialise()
    try:
        assert other.get_profiles_list() == ["alice", "files"]
        assert other.get_entry_point("files") == "file_sharing"
    finally:
        await other.close()


@aio
async def test_uninitialised_storage_refuses_calls(empty_db_url: str) -> None:
    """Calling a method before initialise() gives a clear error."""
    storage = Storage(empty_db_url)
    with pytest.raises(DatabaseError, match="initialise"):
        await storage.create_profile("alice")
    await storage.close()


@aio
async def test_params(storage: Storage) -> None:
    """General and per-profile parameters: set, replace, load, read one, read for all."""
    await storage.create_profile("alice")
    await storage.create_profile("bob")
    await storage.set_gen_param("General", "lang", "fr")
    await storage.set_gen_param("General", "lang", "de")
    await storage.set_gen_param("General", "theme", None)
    assert await storage.load_gen_params() == {
        ("General", "lang"): "de",
        ("General", "theme"): None,
    }
    await storage.set_ind_param("Connection", "JabberID", "alice@example.org", "alice")
    await storage.set_ind_param("Connection", "autoconnect", "false", "alice")
    await storage.set_ind_param("Connection", "autoconnect", "true", "alice")
    await storage.set_ind_param("Connection", "JabberID", "bob@example.net", "bob")
    assert await storage.load_ind_params("alice") == {
        ("Connection", "JabberID"): "alice@example.org",
        ("Connection", "autoconnect"): "true",
    }
    assert await storage.get_ind_param("Connection", "JabberID", "bob") == "bob@example.net"
    assert await storage.get_ind_param("Connection", "Password", "bob") is None
    assert await storage.get_ind_param_values("Connection", "JabberID") == {
        "alice": "alice@example.org",
        "bob": "bob@example.net",
    }
    with pytest.raises(ProfileUnknownError):
        await storage.set_ind_param("Connection", "JabberID", "x", "carol")
    with pytest.raises(ProfileUnknownError):
        await storage.load_ind_params("carol")


@aio
async def test_private_values(storage: Storage) -> None:
    """JSON and binary private values, general and per profile, are kept apart."""
    await storage.create_profile("alice")
    value = {"list": [1, 2.5, "trois", None, True], "nested": {"é": "ü"}}
    await storage.set_private_value("plugin", "json", value)
    await storage.set_private_value("plugin", "none", None)
    await storage.set_private_value("plugin", "json", "per profile", profile="alice")
    await storage.set_private_value("plugin", "bin", b"\x00\xff\x10", binary=True)
    await storage.set_private_value("plugin", "bin", b"alice", binary=True, profile="alice")
    await storage.set_private_value("other", "json", 42)
    assert await storage.get_privates("plugin") == {"json": value, "none": None}
    assert await storage.get_privates("plugin", ["json", "missing"]) == {"json": value}
    assert await storage.get_privates("plugin", profile="alice") == {"json": "per profile"}
    assert await storage.get_privates("plugin", binary=True) == {"bin": b"\x00\xff\x10"}
    assert await storage.get_privates("plugin", binary=True, profile="alice") == {"bin": b"alice"}
    # replace
    await storage.set_private_value("plugin", "json", [1], profile="alice")
    assert await storage.get_privates("plugin", profile="alice") == {"json": [1]}
    await storage.del_private_value("plugin", "json")
    assert await storage.get_privates("plugin") == {"none": None}
    assert await storage.get_privates("plugin", profile="alice") == {"json": [1]}
    await storage.del_private_namespace("plugin", binary=True)
    assert await storage.get_privates("plugin", binary=True) == {}
    assert await storage.get_privates("plugin", binary=True, profile="alice") == {"bin": b"alice"}
    await storage.del_private_namespace("plugin", profile="alice")
    assert await storage.get_privates("plugin", profile="alice") == {}
    assert await storage.get_privates("other") == {"json": 42}
    with pytest.raises(InvalidInput):
        await storage.set_private_value("plugin", "bin", "not bytes", binary=True)


@aio
async def test_delete_profile_cascades(storage: Storage) -> None:
    """Deleting a profile deletes everything stored for it, and nothing of other profiles."""
    for name in ("alice", "bob"):
        await storage.create_profile(name)
        jid = JID(f"{name}@example.org")
        await storage.set_ind_param("Connection", "JabberID", jid.full(), name)
        await storage.set_private_value("ns", "k", name, profile=name)
        await storage.set_private_value("ns", "k", name.encode(), binary=True, profile=name)
        await storage.add_to_history(
            HistoryMessage(
                source=jid, dest=JID("x@example.org"), timestamp=1.0, message={"": f"hi {name}"}
            ),
            name,
        )
        await storage.set_file(name, "f.txt", size=10)
        node = await storage.set_pubsub_node(name, JID("pubsub.example.org"), "node")
        await storage.cache_pubsub_items(node, [parse(f'<item id="1"><x>{name}</x></item>')])
    await storage.delete_profile("alice")
    await storage.create_profile("alice")  # a new profile with the same name starts empty
    assert await storage.load_ind_params("alice") == {}
    assert await storage.get_privates("ns", profile="alice") == {}
    assert await storage.get_privates("ns", binary=True, profile="alice") == {}
    assert await storage.history_get("alice") == []
    assert await storage.get_files("alice") == []
    assert await storage.get_pubsub_node("alice", JID("pubsub.example.org"), "node") is None
    assert await storage.search_pubsub_items({"fts": "alice"}) == []
    assert [m.message for m in await storage.history_get("bob")] == [{"": "hi bob"}]
    assert await storage.get_privates("ns", profile="bob") == {"k": "bob"}
    assert len(await storage.get_files("bob")) == 1
    assert [i.name for i in await storage.search_pubsub_items({"fts": "bob"})] == ["1"]
