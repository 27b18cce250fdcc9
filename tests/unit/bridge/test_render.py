"""Introspection XML and the reStructuredText reference, derived from the declarations."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import docutils.core
import docutils.utils
from dbus_fast.introspection import Node

from libervia.backend.bridge import render
from libervia.backend.bridge.api import Arg, Method, Signal, core_api


def _plugin_api():  # type: ignore[no-untyped-def]
    a = core_api()
    a.add_method(
        Method(
            "plugin_echo",
            (Arg("value", "a{sv}", "anything"),),
            "a{sv}",
            "Echo.",
            interface="plugin",
        )
    )
    a.add_signal(Signal("plugin_event", (Arg("what", "s", "event"),), "Fired.", "plugin"))
    return a


def test_xml_lists_every_method_with_arg_names_and_directions() -> None:
    a = _plugin_api()
    root = ET.fromstring(a.introspection_xml().split("\n", 2)[2])  # skip the DOCTYPE
    interfaces = {i.get("name"): i for i in root.findall("interface")}
    assert set(interfaces) == {
        "org.freedesktop.DBus.Introspectable",
        "org.freedesktop.DBus.Peer",
        "org.freedesktop.DBus.Properties",
        "org.libervia.Libervia.core",
        "org.libervia.Libervia.plugin",
    }
    for method in a.methods.values():
        element = interfaces[method.full_interface].find(f"method[@name='{method.name}']")
        assert element is not None, method.name
        args = [(x.get("name"), x.get("type"), x.get("direction")) for x in element]
        expected = [(arg.name, arg.signature, "in") for arg in method.args]
        if method.returns:
            expected.append(("result", method.returns, "out"))
        assert args == expected, method.name
    for signal in a.signals.values():
        element = interfaces[signal.full_interface].find(f"signal[@name='{signal.name}']")
        assert element is not None, signal.name
        assert [(x.get("name"), x.get("type")) for x in element] == [
            (arg.name, arg.signature) for arg in signal.args
        ]
        assert all(x.get("direction") is None for x in element)


def test_xml_parses_with_dbus_fast() -> None:
    node = Node.parse(_plugin_api().introspection_xml())
    core = next(i for i in node.interfaces if i.name == "org.libervia.Libervia.core")
    history = next(m for m in core.methods if m.name == "history_get")
    assert [x.name for x in history.in_args] == [
        "from_jid",
        "to_jid",
        "limit",
        "between",
        "filters",
        "profile",
    ]
    assert history.out_signature == "a(sdssa{ss}a{ss}ss)"
    plugin = next(i for i in node.interfaces if i.name == "org.libervia.Libervia.plugin")
    assert [m.name for m in plugin.methods] == ["plugin_echo"]
    assert [s.name for s in plugin.signals] == ["plugin_event"]


def test_empty_plugin_interface_still_present() -> None:
    node = Node.parse(core_api().introspection_xml())
    plugin = next(i for i in node.interfaces if i.name == "org.libervia.Libervia.plugin")
    assert plugin.methods == [] and plugin.signals == []


def test_child_node_xml() -> None:
    node = Node.parse(render.child_node_xml("libervia"))
    assert [n.name for n in node.nodes] == ["libervia"]


def _rst_problems(text: str) -> list[str]:
    """docutils messages of level warning or above for a stand-alone document."""
    doc = docutils.core.publish_doctree(
        "Reference\n=========\n\n" + text,
        settings_overrides={"report_level": 5, "halt_level": 5},
    )
    return [
        m.astext()
        for m in doc.findall(docutils.nodes.system_message)
        if m["level"] >= docutils.utils.Reporter.WARNING_LEVEL
    ]


def test_rst_documents_every_member() -> None:
    a = _plugin_api()
    text = a.to_rst()
    assert "Interface ``org.libervia.Libervia.core``" in text
    assert "Interface ``org.libervia.Libervia.plugin``" in text
    assert text.index("org.libervia.Libervia.core``") < text.index("``plugin_echo``")
    for method in a.methods.values():
        assert f"``{method.name}``\n" in text
        assert method.doc in text
        for arg in method.args:
            assert f"- ``{arg.name}`` (``{arg.signature}``)" in text
    assert "Returns ``a(sdssa{ss}a{ss}ss)``: (uid, timestamp" in text
    assert "``profile_create(profile: s, password: s, component: s)`` → nothing" in text
    for signal in a.signals.values():
        assert f"``{signal.name}``\n" in text and signal.doc in text
    assert _rst_problems(text) == []


def test_rst_empty_plugin_interface_is_explained() -> None:
    text = core_api().to_rst()
    assert "plugins add their methods and signals at load time" in text
    assert _rst_problems(text) == []


def test_rst_bad_markup_is_detected() -> None:
    """The checker above can fail."""
    assert _rst_problems("Title\n==\n\n``unclosed") != []
