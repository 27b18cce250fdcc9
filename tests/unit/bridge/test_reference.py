"""The documented bridge API includes what the shipped plugins declare."""

from __future__ import annotations

from libervia.backend.bridge.reference import full_api


def test_full_api_has_core_and_plugin_declarations() -> None:
    api, refused = full_api()
    assert refused == {}
    for name in ("ready_get", "message_send", "ps_items_get", "ps_cache_search", "mb_get",
                 "mam_get", "ping"):  # fmt: skip
        assert name in api.methods, name
    assert api.methods["ps_items_get"].interface == "plugin"
    assert api.methods["ready_get"].interface == "core"
    assert [a.name for a in api.signals["ps_event"].args] == [
        "category", "service", "node", "event_type", "data", "profile"
    ]  # fmt: skip
    text = api.to_rst()
    assert "``ps_cache_search(query: s)`` → ``s``" in text
    assert "Interface ``org.libervia.Libervia.plugin``" in text
