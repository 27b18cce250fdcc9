"""Fuzz targets: one plain function ``fuzz_<parser>(data: bytes)`` per parser of hostile input.

Each target feeds ``data`` to one parser the way the daemon does and returns normally when the
input is accepted *or refused the documented way* (the parser's own rejection: ``InvalidInput``,
``XMLParseError``, ``AtomError``, ``SDPError``, a Jingle or stanza error answered to the peer,
a stream error). Anything else escaping is a bug: an unhandled exception in the daemon.

They are driven by hypothesis in ``tests/reliability/test_hostile_parsers.py`` (repeatable:
fixed ``max_examples``, ``derandomize=True``). They can also be run by `atheris
<https://github.com/google/atheris>`_ (coverage-guided, not a dependency of the project)::

    pip install atheris
    python -m tests.reliability.fuzz_targets fuzz_jingle -atheris_runs=100000
    python -m tests.reliability.fuzz_targets fuzz_sdp corpus_dir/   # libFuzzer options follow

(from the repository root; ``python -m tests.reliability.fuzz_targets`` alone lists the
targets). A crash found by atheris is a bug of the parser, to be turned into a unit test.

Stanza targets take the UTF-8 text of one XML element (``<message/>``, ``<presence/>``,
``<iq/>``...); bytes that are not one well-formed element are refused by
:func:`libervia.backend.tools.xml.parse` first, as the stream parser would.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from twisted.internet.testing import StringTransport
from twisted.words.protocols.jabber import xmlstream
from twisted.words.protocols.jabber.error import StanzaError
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from wokkel import data_form

import libervia.backend.core.compat  # noqa: F401 - before wokkel
from libervia.backend.core.exceptions import InvalidInput
from libervia.backend.core.messages import parse_message
from libervia.backend.core.roster import PresenceHandler, RosterHandler
from libervia.backend.core.triggers import TriggerManager
from libervia.backend.plugins.plugin_xep_0060 import parse_items_answer, read_form
from libervia.backend.plugins.plugin_xep_0060.events import parse_event
from libervia.backend.plugins.plugin_xep_0166.elements import parse_jingle
from libervia.backend.plugins.plugin_xep_0166.errors import JingleError
from libervia.backend.tools import atom
from libervia.backend.tools import xml as xml_tools
from libervia.backend.tools.webrtc import sdp
from libervia.backend.tools.webrtc.model import SDPError

OWN_JID = JID("alice@localhost/pc")
#: stanza limits used by the stream target (the daemon's are bigger, see core/xmpp.py: the
#: mechanism is the same, smaller figures keep the target fast)
STREAM_MAX_STANZA_SIZE = 64 * 1024
STREAM_MAX_ELEMENTS = 2_000

STREAM_HEADER = (
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
    b"from='localhost' id='s1' version='1.0'>"
)


def element_of(data: bytes) -> domish.Element | None:
    """One XML element from ``data`` (None when refused: not UTF-8, not well-formed...)."""
    try:
        return xml_tools.parse(data)
    except (xml_tools.XMLParseError, UnicodeDecodeError):
        return None


# --- the XML stream ---------------------------------------------------------------------------


class StreamResult:
    """What a fed stream did: the stanzas it delivered, whether it closed, what it sent."""

    def __init__(self) -> None:
        self.stanzas: list[domish.Element] = []
        self.closed = False
        self.sent = b""


def feed_stream(data: bytes, chunk: int = 0) -> StreamResult:
    """Feed ``data`` after a stream header into a real Twisted ``XmlStream`` (with limits)."""
    xs = xmlstream.XmlStream(xmlstream.Authenticator())
    transport = StringTransport()
    xs.makeConnection(transport)
    result = StreamResult()

    def closed(_: Any) -> None:
        result.closed = True

    xs.addObserver(xmlstream.STREAM_END_EVENT, closed)
    xs.dataReceived(STREAM_HEADER)
    xs.stream.maxStanzaSize = STREAM_MAX_STANZA_SIZE
    xs.stream.maxElementCount = STREAM_MAX_ELEMENTS
    xs.addObserver("/*", result.stanzas.append)
    if chunk <= 0:
        xs.dataReceived(data)
    else:
        for start in range(0, len(data), chunk):
            if transport.disconnecting:
                break
            xs.dataReceived(data[start : start + chunk])
    result.closed = result.closed or bool(transport.disconnecting)
    result.sent = transport.value()
    return result


def fuzz_stream(data: bytes) -> None:
    """The stream parser: any bytes are parsed or end the stream (never raise)."""
    feed_stream(data)


# --- stanzas ----------------------------------------------------------------------------------


def fuzz_message(data: bytes) -> None:
    """``<message/>`` → history message (core/messages.py ``parse_message``)."""
    element = element_of(data)
    if element is None:
        return
    try:
        message = parse_message(element, OWN_JID, 0.0)
    except InvalidInput:
        return
    # what is stored and signalled must be serialisable
    json.dumps([message.source.full(), message.dest.full(), message.message, message.subject])


class _Stub:
    def __init__(self) -> None:
        self.profile = "fuzz"
        self.jid = OWN_JID
        self.roster: Any = None
        self.sent: list[Any] = []

    def send(self, element: Any) -> None:
        self.sent.append(element)


def _emit(*args: Any) -> None:
    json.dumps(args)  # the bridge serialises every signal argument


def fuzz_presence(data: bytes) -> None:
    """``<presence/>`` → presence handler (core/roster.py, wokkel's parsers)."""
    element = element_of(data)
    if element is None:
        return
    client = _Stub()
    handler = PresenceHandler(client, _emit, TriggerManager())  # type: ignore[arg-type]
    handler.makeConnection(client)  # type: ignore[arg-type]
    handler._onPresence(element)


def fuzz_roster_push(data: bytes) -> None:
    """``<iq type='set'><query xmlns='jabber:iq:roster'/></iq>`` → roster handler: handled,
    or refused with a stanza error (``StanzaError``), never another exception."""
    element = element_of(data)
    if element is None:
        return
    client = _Stub()
    handler = RosterHandler(client, _emit)  # type: ignore[arg-type]
    handler.parent = client
    try:
        handler._onRosterSet(element)
    except StanzaError:
        return


def fuzz_pubsub_event(data: bytes) -> None:
    """``<message><event xmlns='...pubsub#event'/></message>`` → notifications."""
    element = element_of(data)
    if element is None:
        return
    try:
        events = parse_event(element, "localhost")
    except InvalidInput:
        return
    for event in events:
        json.dumps(event.signal_data())
        event.service.full()


def fuzz_pubsub_items(data: bytes) -> None:
    """An items answer (``<iq type='result'><pubsub><items/>...``) → a page of items."""
    element = element_of(data)
    if element is None:
        return
    try:
        result = parse_items_answer(element)
    except InvalidInput:
        return
    for item in result.items:
        xml_tools.serialise(item)
    if result.rsm is not None:
        json.dumps(result.rsm.to_dict())


def fuzz_atom_entry(data: bytes) -> None:
    """An Atom entry (tools/atom.py, the hardened lxml parser) → a blog post dict."""
    for parse in (atom.parse_entry, atom.parse_item):
        try:
            post = parse(data)
        except atom.AtomError:
            continue
        json.dumps(post)


def fuzz_data_form(data: bytes) -> None:
    """A data form (XEP-0004, ``<x xmlns='jabber:x:data'/>``) inside a parent, as pubsub reads
    configurations and options."""
    element = element_of(data)
    if element is None:
        return
    parent = domish.Element((None, "parent"))
    parent.addChild(element)
    try:
        values = read_form(parent)
    except InvalidInput:
        return
    json.dumps({k: v if isinstance(v, str | list) else str(v) for k, v in values.items()})
    _ = data_form  # the parser used by read_form


def fuzz_jingle(data: bytes) -> None:
    """A ``<jingle xmlns='urn:xmpp:jingle:1'/>`` element → a Jingle request (elements.py)."""
    element = element_of(data)
    if element is None:
        return
    try:
        parse_jingle(element)
    except JingleError as e:
        e.response(_iq_for_error())  # the error answer is buildable


def _iq_for_error() -> domish.Element:
    iq = domish.Element((None, "iq"))
    iq["type"], iq["id"], iq["from"], iq["to"] = "set", "x", "bob@localhost/r", OWN_JID.full()
    return iq


def fuzz_sdp(data: bytes) -> None:
    """An SDP offer/answer (tools/webrtc/sdp.py)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    try:
        description = sdp.parse(text)
    except SDPError:
        return
    sdp.build(description)


TARGETS: dict[str, Callable[[bytes], None]] = {
    name: function
    for name, function in sorted(globals().items())
    if name.startswith("fuzz_") and callable(function)
}


def main(argv: list[str]) -> None:
    """``python -m tests.reliability.fuzz_targets TARGET [libFuzzer options]`` with atheris."""
    if len(argv) < 2 or argv[1] not in TARGETS:
        print("targets:", ", ".join(TARGETS))
        return
    import atheris  # type: ignore[import-not-found]  # optional, see the module docstring

    target = TARGETS[argv[1]]
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
