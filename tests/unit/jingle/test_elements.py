"""Pure parse/build round trips of Jingle and file transfer elements (no stream)."""

from __future__ import annotations

import pytest

from libervia.backend.plugins.plugin_xep_0166 import Action, Reason, Role, Senders
from libervia.backend.plugins.plugin_xep_0166.elements import (
    ContentElement,
    build_jingle,
    build_reason,
    parse_jingle,
)
from libervia.backend.plugins.plugin_xep_0166.errors import JingleError
from libervia.backend.plugins.plugin_xep_0166.session import InvalidTransition, Session
from libervia.backend.plugins.plugin_xep_0234.description import FileInfo
from libervia.backend.tools import xml as xml_tools

NS = "urn:xmpp:jingle:1"
FT = "urn:xmpp:jingle:apps:file-transfer:5"


def test_jingle_round_trip() -> None:
    """A built <jingle/> parses back to the same action, sid, contents and reason."""
    description = xml_tools.parse(f"<description xmlns='{FT}'/>")
    element = build_jingle(
        Action.SESSION_TERMINATE,
        "s1",
        contents=[ContentElement(Role.INITIATOR, "a", Senders.RESPONDER, description=description)],
        reason=build_reason(Reason.DECLINE, "no thanks"),
    )
    parsed = parse_jingle(xml_tools.parse(element.toXml()))
    assert parsed.action is Action.SESSION_TERMINATE and parsed.sid == "s1"
    (content,) = parsed.contents
    assert (content.creator, content.name, content.senders) == (
        Role.INITIATOR,
        "a",
        Senders.RESPONDER,
    )
    assert content.description is not None and content.description.uri == FT
    assert parsed.reason is not None
    assert (parsed.reason.condition, parsed.reason.text) == (Reason.DECLINE, "no thanks")


def test_tolerant_parsing() -> None:
    """Missing creator and name (real clients) default to initiator and the index; an
    unknown reason condition reads as general-error; other-namespace children are payloads."""
    parsed = parse_jingle(
        xml_tools.parse(
            f"<jingle xmlns='{NS}' action='session-info' sid='x'><content/><content/>"
            "<reason><flying-saucer/></reason><ringing xmlns='urn:x'/></jingle>"
        )
    )
    assert [(c.creator, c.name, c.name_defaulted) for c in parsed.contents] == [
        (Role.INITIATOR, "0", True),
        (Role.INITIATOR, "1", True),
    ]
    assert parsed.reason is not None and parsed.reason.condition is Reason.GENERAL_ERROR
    assert [p.name for p in parsed.payloads] == ["ringing"]


@pytest.mark.parametrize(
    "xml",
    [
        f"<jingle xmlns='{NS}' sid='x'/>",
        f"<jingle xmlns='{NS}' action='nope' sid='x'/>",
        f"<jingle xmlns='{NS}' action='session-info'/>",
        f"<jingle xmlns='{NS}' action='session-info' sid='{'x' * 300}'/>",
        f"<jingle xmlns='{NS}' action='content-add' sid='x'><content name='a'/>"
        "<content name='a'/></jingle>",
        f"<jingle xmlns='{NS}' action='content-add' sid='x'><content creator='me'/></jingle>",
    ],
)
def test_malformed_jingle(xml: str) -> None:
    """Missing/unknown action, missing or huge sid, duplicate content, bad creator."""
    with pytest.raises(JingleError) as info:
        parse_jingle(xml_tools.parse(xml))
    assert info.value.condition == "bad-request"


def test_state_machine() -> None:
    """pending -> active -> ended; never back, never twice."""
    from twisted.words.protocols.jabber.jid import JID

    from libervia.backend.plugins.plugin_xep_0166 import State

    session = Session("s", JID("a@b/c"), JID("d@e/f"), Role.INITIATOR)
    session.transition(State.ACTIVE)
    with pytest.raises(InvalidTransition):
        session.transition(State.PENDING)
    session.transition(State.ENDED)
    with pytest.raises(InvalidTransition):
        session.transition(State.ENDED)
    assert session.next_name() == "0"


def test_file_info_round_trip() -> None:
    """A file description parses back; Conversations' mediaType is understood."""
    info = FileInfo("a.txt", 12, "d", "text/plain", "2024-01-01T00:00:00Z", {"sha-256": b"x" * 32})
    assert FileInfo.parse(xml_tools.parse(info.description().toXml())) == info
    legacy = xml_tools.parse(
        f"<description xmlns='{FT}'><file><mediaType>image/png</mediaType><size>3</size>"
        "</file></description>"
    )
    assert FileInfo.parse(legacy).media_type == "image/png"


@pytest.mark.parametrize("size", ["-1", "1.5", "0x10", str(1 << 41), "٣"])
def test_file_info_refuses_bad_sizes(size: str) -> None:
    """Negative, non-decimal, absurd sizes are bad requests."""
    with pytest.raises(JingleError):
        FileInfo.parse(
            xml_tools.parse(
                f"<description xmlns='{FT}'><file><size>{size}</size></file></description>"
            )
        )
