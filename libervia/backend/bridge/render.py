"""What is derived from the declarations: D-Bus introspection XML and the reStructuredText
reference included in ``doc/bridge.rst``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from libervia.backend.bridge.api import INTERFACES, interface_name

if TYPE_CHECKING:
    from libervia.backend.bridge.api import Arg, BridgeAPI, Method, Signal

DOCTYPE = (
    '<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"\n'
    ' "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">\n'
)
#: the return value's name in introspection (D-Bus return values are "out" arguments)
RESULT_NAME = "result"

# standard interfaces the bridge object answers (see dbus.py); the bridge has no properties,
# but tools such as busctl ask for them, so Properties is implemented (empty)
_STANDARD = {
    "org.freedesktop.DBus.Introspectable": [("Introspect", [], [("xml_data", "s")])],
    "org.freedesktop.DBus.Peer": [
        ("Ping", [], []),
        ("GetMachineId", [], [("machine_uuid", "s")]),
    ],
    "org.freedesktop.DBus.Properties": [
        ("Get", [("interface_name", "s"), ("property_name", "s")], [("value", "v")]),
        ("GetAll", [("interface_name", "s")], [("props", "a{sv}")]),
        ("Set", [("interface_name", "s"), ("property_name", "s"), ("value", "v")], []),
    ],
}


def _arg(parent: ET.Element, name: str, signature: str, direction: str | None) -> None:
    attrs = {"name": name, "type": signature}
    if direction:
        attrs["direction"] = direction
    ET.SubElement(parent, "arg", attrs)


def introspection_xml(api: BridgeAPI) -> str:
    """The introspection XML of the bridge object: both Libervia interfaces (always present,
    even when no plugin added anything) and the standard ones."""
    node = ET.Element("node")
    for iface_name, members in _STANDARD.items():
        iface = ET.SubElement(node, "interface", {"name": iface_name})
        for name, in_args, out_args in members:
            m = ET.SubElement(iface, "method", {"name": name})
            for arg_name, sig in in_args:
                _arg(m, arg_name, sig, "in")
            for arg_name, sig in out_args:
                _arg(m, arg_name, sig, "out")
        if iface_name == "org.freedesktop.DBus.Properties":
            s = ET.SubElement(iface, "signal", {"name": "PropertiesChanged"})
            for arg_name, sig in (
                ("interface_name", "s"),
                ("changed_properties", "a{sv}"),
                ("invalidated_properties", "as"),
            ):
                _arg(s, arg_name, sig, None)
    for short in INTERFACES:
        methods, signals = api.interface_members(short)
        iface = ET.SubElement(node, "interface", {"name": interface_name(short)})
        for method in methods:
            m = ET.SubElement(iface, "method", {"name": method.name})
            for a in method.args:
                _arg(m, a.name, a.signature, "in")
            if method.returns:
                _arg(m, RESULT_NAME, method.returns, "out")
        for signal in signals:
            s = ET.SubElement(iface, "signal", {"name": signal.name})
            for a in signal.args:
                _arg(s, a.name, a.signature, None)
    ET.indent(node)
    return DOCTYPE + ET.tostring(node, encoding="unicode") + "\n"


def child_node_xml(child: str) -> str:
    """Introspection XML of an ancestor of the bridge object, listing only the way down (so
    that tools walking the object tree from ``/`` find the bridge)."""
    node = ET.Element("node")
    ET.SubElement(node, "node", {"name": child})
    return DOCTYPE + ET.tostring(node, encoding="unicode") + "\n"


# --- reStructuredText --------------------------------------------------------------------------


def _heading(title: str, char: str) -> list[str]:
    return [title, char * len(title), ""]


def _args_lines(args: tuple[Arg, ...]) -> list[str]:
    lines = []
    for a in args:
        doc = f": {a.doc}" if a.doc else ""
        lines.append(f"- ``{a.name}`` (``{a.signature}``){doc}")
    return lines


def _call_form(name: str, args: tuple[Arg, ...]) -> str:
    return f"{name}(" + ", ".join(f"{a.name}: {a.signature}" for a in args) + ")"


def _method_rst(method: Method, char: str) -> list[str]:
    out = _heading(f"``{method.name}``", char)
    returns = f"``{method.returns}``" if method.returns else "nothing"
    out += [f"``{_call_form(method.name, method.args)}`` → {returns}", "", method.doc, ""]
    if method.args:
        out += ["Arguments:", ""] + _args_lines(method.args) + [""]
    if method.returns:
        doc = f": {method.returns_doc}" if method.returns_doc else ""
        out += [f"Returns ``{method.returns}``{doc}", ""]
    if method.before_ready:
        out += ["Answered while the daemon is still starting (does not wait for readiness).", ""]
    return out


def _signal_rst(signal: Signal, char: str) -> list[str]:
    out = _heading(f"``{signal.name}``", char)
    out += [f"``{_call_form(signal.name, signal.args)}``", "", signal.doc, ""]
    if signal.args:
        out += ["Arguments:", ""] + _args_lines(signal.args) + [""]
    return out


def to_rst(api: BridgeAPI, section_chars: str = '~^"') -> str:
    """The reference: a section per interface (underlined with ``section_chars[0]``), with
    "Methods" and "Signals" subsections (``[1]``) and one entry per member (``[2]``)."""
    iface_char, group_char, member_char = section_chars[:3]
    out: list[str] = []
    for short in INTERFACES:
        methods, signals = api.interface_members(short)
        out += _heading(f"Interface ``{interface_name(short)}``", iface_char)
        if not methods and not signals:
            out += [
                "Nothing declared here: plugins add their methods and signals at load time.",
                "",
            ]
            continue
        if methods:
            out += _heading("Methods", group_char)
            for method in methods:
                out += _method_rst(method, member_char)
        if signals:
            out += _heading("Signals", group_char)
            for signal in signals:
                out += _signal_rst(signal, member_char)
    return "\n".join(out).rstrip() + "\n"
