from libervia.backend.memory.sqla import Storage
from tests.conftest import aio


@aio
async def test_profiles_roundtrip(storage: Storage) -> None:
    """A profile created is listed, and gone once deleted."""
    await storage.create_profile("alice")
    assert storage.get_profiles_list() == ["alice"]
    await storage.delete_profile("alice")
    assert storage.get_profiles_list() == []
