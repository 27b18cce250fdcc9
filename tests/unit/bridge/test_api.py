"""The declarations: the core API of the brief, valid signatures, refusals."""

from __future__ import annotations

import pytest
from dbus_fast.signature import get_signature_tree

from libervia.backend.bridge.api import Arg, BridgeAPI, Method, Signal, core_api
from libervia.backend.core.exceptions import InvalidInput

# name -> (argument signatures, return signature): the contract frontends rely on
CORE_METHODS = {
    "ready_get": ("", ""),
    "version_get": ("", "s"),
    "profile_create": ("sss", ""),
    "profile_delete_async": ("s", ""),
    "profiles_list_get": ("bb", "as"),
    "profile_is_session_started": ("s", "b"),
    "profile_start_session": ("ss", "b"),
    "profile_name_get": ("s", "s"),
    "profile_set_default": ("s", ""),
    "connect": ("ssa{ss}", "b"),
    "disconnect": ("s", ""),
    "profile_password_set": ("sss", ""),
    "is_connected": ("s", "b"),
    "param_set": ("sssis", ""),
    "param_get_a_async": ("sssis", "s"),
    "message_send": ("sa{ss}a{ss}sss", ""),
    "history_get": ("ssiba{ss}s", "a(sdssa{ss}a{ss}ss)"),
    "contacts_get": ("s", "a(sa{ss}as)"),
    "contact_add": ("ss", ""),
    "contact_update": ("ssass", ""),
    "contact_del": ("ss", ""),
    "subscription": ("sss", ""),
    "presence_set": ("ssa{ss}s", ""),
    "presence_statuses_get": ("s", "a{sa{s(sia{ss})}}"),
    "disco_infos": ("ssbs", "(asa(sss)a{sa(a{ss}as)})"),
    "disco_items": ("ssbs", "a(sss)"),
    "action_launch": ("sss", "s"),
    "progress_get": ("ss", "a{ss}"),
    "progress_get_all": ("s", "a{sa{sa{ss}}}"),
}
CORE_SIGNALS = {
    "connected": "ss",
    "disconnected": "s",
    "message_new": "sdssa{ss}a{ss}sss",
    "presence_update": "ssia{ss}s",
    "contact_new": "sa{ss}ass",
    "contact_deleted": "ss",
    "action_new": "ssis",
    "action_update": "sss",
    "progress_started": "sss",
    "progress_finished": "sss",
    "progress_error": "sss",
}


def test_core_methods_match_the_contract() -> None:
    a = core_api()
    assert {n: (m.in_signature, m.returns) for n, m in a.methods.items()} == CORE_METHODS
    assert {n for n, m in a.methods.items() if m.before_ready} == {"ready_get", "version_get"}
    assert all(m.interface == "core" and m.doc for m in a.methods.values())


def test_core_signals_match_the_contract() -> None:
    a = core_api()
    assert {n: s.signature for n, s in a.signals.items()} == CORE_SIGNALS
    assert all(s.interface == "core" and s.doc for s in a.signals.values())


def test_every_signature_is_one_valid_type() -> None:
    for member in core_api():
        for arg in member.args:
            assert len(get_signature_tree(arg.signature).types) == 1, (member.name, arg)
            assert arg.doc, (member.name, arg.name)
        if isinstance(member, Method) and member.returns:
            assert len(get_signature_tree(member.returns).types) == 1, member.name


def test_profile_key_argument_documents_default() -> None:
    method = core_api().methods["profile_name_get"]
    assert method.args[0].name == "profile_key"
    assert "@DEFAULT@" in method.args[0].doc


def test_core_api_is_a_fresh_copy() -> None:
    a = core_api()
    a.add_method(Method("plugin_thing", (), "", "x", interface="plugin"))
    assert "plugin_thing" not in core_api().methods


def test_duplicates_refused() -> None:
    a = core_api()
    with pytest.raises(InvalidInput, match="already declared"):
        a.add_method(Method("version_get", (), "s", "again", interface="plugin"))
    with pytest.raises(InvalidInput, match="already declared"):
        a.add_signal(Signal("connected", (), "again", interface="plugin"))


@pytest.mark.parametrize("signature", ["", "a{", "ss", "a{vs}", "z", "(", "ah", 1])
def test_invalid_argument_signature_refused(signature: object) -> None:
    with pytest.raises(InvalidInput):
        Method("x", (Arg("a", signature),), "", "doc")  # type: ignore[arg-type]


@pytest.mark.parametrize("returns", ["ss", "a{", "h"])
def test_invalid_return_signature_refused(returns: str) -> None:
    with pytest.raises(InvalidInput):
        Method("x", (), returns, "doc")


@pytest.mark.parametrize("name", ["ProfileCreate", "1x", "a-b", "", "é", "a.b", "x" * 256])
def test_invalid_names_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        Method(name, (), "", "doc")
    with pytest.raises(InvalidInput):
        Signal(name, (), "doc")
    with pytest.raises(InvalidInput):
        Method("ok", (Arg(name, "s"),), "", "doc")


def test_duplicate_argument_and_bad_interface_refused() -> None:
    with pytest.raises(InvalidInput, match="duplicate argument"):
        Method("x", (Arg("a", "s"), Arg("a", "i")), "", "doc")
    with pytest.raises(InvalidInput, match="unknown interface"):
        Method("x", (), "", "doc", interface="other")
    with pytest.raises(InvalidInput, match="Arg instances"):
        Signal("x", (("a", "s"),), "doc")  # type: ignore[arg-type]


def test_args_lists_become_tuples() -> None:
    m = Method("x", [Arg("a", "s"), Arg("b", "a{ss}")], "b", "doc")  # type: ignore[arg-type]
    assert m.args == (Arg("a", "s"), Arg("b", "a{ss}"))
    assert m.in_signature == "sa{ss}"
    assert m.full_interface == "org.libervia.Libervia.core"


def test_registry_iteration_and_interfaces() -> None:
    a = BridgeAPI.of(
        [Method("m1", (), "", "d"), Method("m2", (), "", "d", interface="plugin")],
        [Signal("s1", (), "d", interface="plugin")],
    )
    assert [x.name for x in a] == ["m1", "m2", "s1"]
    assert a.interface_members("plugin") == ([a.methods["m2"]], [a.signals["s1"]])
