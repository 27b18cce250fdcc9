"""Bridge adapters: decoding of D-Bus strings and serialised dicts; bad input is InvalidInput."""

from __future__ import annotations

import pytest

from libervia.backend.bridge.adapters import (
    CoreAdapters,
    history_filters,
    param_text,
    parse_json_dict,
)
from libervia.backend.bridge.api import core_api
from libervia.backend.core.exceptions import InvalidInput
from libervia.backend.core.xmpp import parse_jid_arg


def test_jids() -> None:
    assert parse_jid_arg("Alice@Example.org/Res").full() == "alice@example.org/Res"
    for bad in ("a@@b", "@example.org", "", "x@y/" + "r" * 2000, "a b@c"):
        with pytest.raises(InvalidInput):
            parse_jid_arg(bad, "contact")


def test_json_dicts() -> None:
    assert parse_json_dict("") == {}
    assert parse_json_dict('{"a": [1]}') == {"a": [1]}
    for bad in ("{", "[1]", '"x"', "null"):
        with pytest.raises(InvalidInput):
            parse_json_dict(bad)


def test_history_filters() -> None:
    assert history_filters(
        {"search": "hello", "types": "chat,normal", "before": "12.5", "last_stanza_id": "true"}
    ) == {"search": "hello", "types": ["chat", "normal"], "before": 12.5, "last_stanza_id": True}
    with pytest.raises(InvalidInput, match="unknown history filter"):
        history_filters({"drop table": "x"})
    with pytest.raises(InvalidInput, match="bad value"):
        history_filters({"after": "yesterday"})


def test_param_text() -> None:
    assert [param_text(v) for v in (True, False, None, 3, "x")] == ["true", "false", "", "3", "x"]


def test_every_core_method_has_an_adapter_with_its_arguments() -> None:
    """The declaration and the adapters never drift apart."""
    import inspect

    methods, _ = core_api().interface_members("core")
    assert len(methods) > 20
    for method in methods:
        adapter = getattr(CoreAdapters, method.name, None)
        assert adapter is not None, method.name
        params = list(inspect.signature(adapter).parameters)[1:]
        assert params == [a.name for a in method.args], method.name
