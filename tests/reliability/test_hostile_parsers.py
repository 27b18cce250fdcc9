"""Hostile input to the stanza parsers: property tests (hypothesis) over the fuzz targets of
:mod:`tests.reliability.fuzz_targets`, then the same kinds of stanzas fed to a logged-in
profile on a fake stream (tests/unit/core/fakes.py): unit level, no sleeping.

What is proved:

- every parser (stream, message, presence, roster push, pubsub event, pubsub items answer,
  Atom entry, data form, Jingle action, SDP) accepts or refuses *the documented way* any
  input: shaped stanzas with hostile values (invalid JIDs, huge or non-ASCII numbers, unknown
  enums, missing attributes, duplicated children), mutations of valid stanzas and random bytes;
  nothing else is raised and nothing is logged at ERROR level (no traceback);
- a session fed those stanzas stays up and answers: every IQ get/set got a result or an error
  with its id, a normal message afterwards reaches the history, a ping is answered;
- entity declarations (billion laughs) and oversized stanzas are refused: the stream is closed
  (stream error), nothing is delivered; the Atom parser refuses DOCTYPE/ENTITY and entries over
  ``MAX_ENTRY_BYTES``.

Repeatable: fixed ``max_examples`` and ``derandomize=True`` (no example database).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.logger import globalLogPublisher
from twisted.words.xish import domish

from libervia.backend.tools import atom
from libervia.backend.tools import xml as xml_tools
from tests.conftest import aio
from tests.reliability import fuzz_targets as ft
from tests.unit.core.fakes import FakeReactor, logged_in, started_host

pytestmark = pytest.mark.timeout(120)

ALICE = "alice@localhost/pc"
EXAMPLES = 300
FAST = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

NS_CLIENT = "jabber:client"
NS_EVENT = "http://jabber.org/protocol/pubsub#event"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_ATOM = "http://www.w3.org/2005/Atom"
NS_XHTML = "http://www.w3.org/1999/xhtml"
NS_FORM = "jabber:x:data"
NS_JINGLE = "urn:xmpp:jingle:1"
NS_ROSTER = "jabber:iq:roster"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_MAM = "urn:xmpp:mam:2"
NS_CAPS = "http://jabber.org/protocol/caps"
NS_FT = "urn:xmpp:jingle:apps:file-transfer:5"
NS_IBB_TR = "urn:xmpp:jingle:transports:ibb:1"
NS_S5B_TR = "urn:xmpp:jingle:transports:s5b:1"
NS_ICE = "urn:xmpp:jingle:transports:ice-udp:1"
NS_RTP = "urn:xmpp:jingle:apps:rtp:1"
NS_JMI = "urn:xmpp:jingle-message:0"


# --- error capture -----------------------------------------------------------------------------


class ErrorCapture(logging.Handler):
    """ERROR records of the standard logging and Twisted's logged failures (``log.err``: what
    wokkel and xish do with an exception escaping a handler)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))

    def twisted(self, event: dict[str, Any]) -> None:
        failure = event.get("log_failure")
        if failure is not None or event.get("isError"):
            text = failure.getTraceback() if failure is not None else str(event)
            self.records.append(text)


@contextlib.contextmanager
def no_errors() -> Iterator[ErrorCapture]:
    capture = ErrorCapture()
    root = logging.getLogger()
    root.addHandler(capture)
    globalLogPublisher.addObserver(capture.twisted)
    try:
        yield capture
    finally:
        globalLogPublisher.removeObserver(capture.twisted)
        root.removeHandler(capture)
    assert not capture.records, "\n".join(capture.records[:3])


def test_error_capture_sees_logged_errors_and_twisted_failures() -> None:
    """The capture used everywhere here fails on an ERROR record and on ``log.err``."""
    from twisted.python import log as twisted_log

    with pytest.raises(AssertionError, match="boom"), no_errors():
        logging.getLogger("libervia.test").error("boom")
    with pytest.raises(AssertionError, match="ZeroDivisionError"), no_errors():
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            twisted_log.err()
    with no_errors():
        logging.getLogger("libervia.test").warning("a logged rejection is fine")


# --- strategies --------------------------------------------------------------------------------

#: characters XML 1.0 accepts (no controls but tab/newlines, no surrogates, no U+FFFE/FFFF)
XML_CHARS = st.characters(
    blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"
) | st.sampled_from("\t\n\r")
TEXT = st.text(XML_CHARS, max_size=30)
HOSTILE_JIDS = [
    "", "@", "a@", "@localhost", "a@b@c", "a b@localhost", "alice@localhost/",
    "/res", "localhost/", "x" * 1100 + "@localhost", "alice@" + "h" * 1100,
    "alice@localhost/" + "r" * 1100, "a@[::1]", "a@256.256.256.256", "a@.localhost",
    "ǅ@localhost", "\u0340@localhost", "\u200b@localhost", "a@xn--zz", "a\u0000b@x",
    "alice@localhost/pc", "bob@localhost/phone", "localhost", "pubsub.localhost",
    "alice@localhost", "bob@localhost", "carol@evil.example/x", "pubsub.evil.example",
]  # fmt: skip
JIDS = st.sampled_from(HOSTILE_JIDS) | TEXT
NUMBERS = st.sampled_from(
    ["", "0", "-1", "5", "127", "-129", "99999999999999999999999", "²", "١٢", "1e9", " 7",
     "NaN", "0x10", "4096", "65535", "65536", "-0"]
)  # fmt: skip
IDS = st.sampled_from(["", "i1", "x" * 300, "a b", "../..", "s1"]) | TEXT


def _clean(value: str) -> str:
    """What domish can serialise (it escapes markup, not invalid characters)."""
    return "".join(c for c in value if c in "\t\n\r" or (" " <= c and c not in "\ufffe\uffff"))


@st.composite
def elements(
    draw: Any,
    names: list[tuple[str | None, str]],
    attrs: dict[str, st.SearchStrategy[str]],
    children: st.SearchStrategy[list[domish.Element]] | None = None,
    text: bool = True,
) -> domish.Element:
    """One element named from ``names``, with some of ``attrs`` and ``children``."""
    uri, name = draw(st.sampled_from(names))
    element = domish.Element((uri, name))
    keys = sorted(attrs)
    for key in (
        draw(st.lists(st.sampled_from(keys), unique=True, max_size=len(keys))) if keys else ()
    ):
        element[key] = _clean(draw(attrs[key]))
    if children is not None:
        for child in draw(children):
            element.addChild(child)
    if text and draw(st.booleans()):
        element.addContent(_clean(draw(TEXT)))
    return element


def generic(depth: int = 2) -> st.SearchStrategy[domish.Element]:
    """Any small element tree (unknown namespaces, random attributes)."""
    names = [(None, "x"), ("urn:junk", "y"), (NS_CLIENT, "body"), (NS_XHTML, "p")]
    leaf = elements(names, {"a": TEXT, "id": IDS}, None)
    if depth <= 0:
        return leaf
    return leaf | elements(names, {"a": TEXT}, st.lists(generic(depth - 1), max_size=3))


def some(strategy: st.SearchStrategy[Any], n: int = 3) -> st.SearchStrategy[list[Any]]:
    return st.lists(strategy, max_size=n)


# pubsub / atom

ATOM_DATES = st.sampled_from(
    ["2024-01-01T00:00:00Z", "2024-13-45T99:99:99Z", "0000-00-00T00:00:00", "9999-12-31T23:59:59"
     "+14:00", "2024-01-01T00:00:00.123456789+25:00", "yesterday", "", "2024-02-30T00:00:00Z"]
)  # fmt: skip


def _atom_text(name: str) -> st.SearchStrategy[domish.Element]:
    xhtml = elements(
        [(NS_XHTML, "div"), (NS_XHTML, "script"), ("urn:evil", "div")],
        {"style": TEXT},
        some(elements([(NS_XHTML, "p"), (NS_XHTML, "b"), ("urn:x", "y")], {"a": TEXT}, None)),
    )
    return elements(
        [(NS_ATOM, name)],
        {"type": st.sampled_from(["text", "html", "xhtml", "junk", ""])},
        some(xhtml, 2),
    )


ATOM_ENTRY = elements(
    [(NS_ATOM, "entry"), (NS_ATOM, "feed"), (None, "entry")],
    {},
    st.lists(
        st.one_of(
            _atom_text("title"),
            _atom_text("content"),
            _atom_text("summary"),
            elements([(NS_ATOM, "id")], {}, None),
            elements(
                [(NS_ATOM, "author")],
                {},
                some(elements([(NS_ATOM, "name"), (NS_ATOM, "uri"), (NS_ATOM, "email")], {})),
            ),
            elements(
                [(NS_ATOM, "link")],
                {
                    "rel": st.sampled_from(["replies", "alternate", "enclosure", ""]),
                    "href": TEXT,
                    "title": TEXT,
                    "type": TEXT,
                    "length": NUMBERS,
                },
                None,
            ),  # fmt: skip
            elements([(NS_ATOM, "category")], {"term": TEXT, "label": TEXT}, None),
        ),
        max_size=8,
    ),
)


def _date_element(name: str, value: str) -> domish.Element:
    element = domish.Element((NS_ATOM, name))
    element.addContent(value)
    return element


@st.composite
def atom_entries(draw: Any) -> domish.Element:
    entry = draw(ATOM_ENTRY)
    for name in draw(some(st.sampled_from(["published", "updated"]), 2)):
        entry.addChild(_date_element(name, draw(ATOM_DATES)))
    return entry


PS_ITEM_EVENT = elements(
    [(NS_EVENT, "item"), (NS_EVENT, "retract"), (NS_EVENT, "junk")],
    {"id": IDS, "publisher": JIDS},
    some(atom_entries() | generic(1), 2),
    text=False,
)
PS_EVENT_CHILD = elements(
    [(NS_EVENT, "items"), (NS_EVENT, "purge"), (NS_EVENT, "delete"), (NS_EVENT, "configuration"),
     (NS_EVENT, "subscription"), (NS_EVENT, "collection"), ("urn:junk", "items")],
    {"node": st.sampled_from(["", "urn:xmpp:microblog:0", "blog", "x" * 2000]) | TEXT},
    some(PS_ITEM_EVENT | elements([(NS_EVENT, "redirect")], {"uri": TEXT}, None), 4),
    text=False,
)  # fmt: skip
PS_EVENT = elements([(NS_EVENT, "event")], {}, some(PS_EVENT_CHILD, 3), text=False)

MESSAGE_ATTRS = {
    "from": JIDS,
    "to": JIDS,
    "type": st.sampled_from(["chat", "normal", "groupchat", "headline", "error", "info", "x"]),
    "id": IDS,
}


def forwarded(inner: st.SearchStrategy[domish.Element]) -> st.SearchStrategy[domish.Element]:
    return elements(
        [(NS_FORWARD, "forwarded")],
        {},
        some(inner | elements([("urn:xmpp:delay", "delay")], {"stamp": ATOM_DATES}, None), 2),
        text=False,
    )


INNER_MESSAGE = elements(
    [(NS_CLIENT, "message"), (None, "message")],
    MESSAGE_ATTRS,
    some(elements([(NS_CLIENT, "body"), (NS_CLIENT, "subject")], {}, None), 2),
    text=False,
)
MESSAGE_CHILD = st.one_of(
    elements(
        [(NS_CLIENT, "body"), (NS_CLIENT, "subject"), (NS_CLIENT, "thread")],
        {"parent": TEXT, "xml:lang": TEXT},
        None,
    ),
    PS_EVENT,
    elements(
        [(NS_CARBONS, "sent"), (NS_CARBONS, "received"), (NS_CARBONS, "private")],
        {},
        some(forwarded(INNER_MESSAGE), 2),
        text=False,
    ),
    elements(
        [(NS_MAM, "result"), ("urn:xmpp:mam:1", "result")],
        {"queryid": IDS, "id": IDS},
        some(forwarded(INNER_MESSAGE), 2),
        text=False,
    ),
    elements(
        [("urn:xmpp:sid:0", "stanza-id"), ("urn:xmpp:sid:0", "origin-id")],
        {"id": IDS, "by": JIDS},
        None,
    ),
    elements(
        [
            (NS_JMI, "propose"),
            (NS_JMI, "proceed"),
            (NS_JMI, "reject"),
            (NS_JMI, "retract"),
            (NS_JMI, "accept"),
            (NS_JMI, "ringing"),
            (NS_JMI, "finish"),
        ],
        {"id": IDS},
        some(generic(1), 2),
    ),  # fmt: skip
    generic(),
)
MESSAGES = elements([(NS_CLIENT, "message")], MESSAGE_ATTRS, some(MESSAGE_CHILD, 4), text=False)

PRESENCES = elements(
    [(NS_CLIENT, "presence")],
    {
        "from": JIDS,
        "to": JIDS,
        "type": st.sampled_from(
            [
                "",
                "unavailable",
                "subscribe",
                "subscribed",
                "unsubscribe",
                "unsubscribed",
                "probe",
                "error",
                "junk",
            ]
        ),  # fmt: skip
        "id": IDS,
    },
    some(
        st.one_of(
            elements([(NS_CLIENT, "show"), (NS_CLIENT, "status")], {}, None),
            elements([(NS_CLIENT, "priority")], {}, None, text=False).flatmap(
                lambda e: NUMBERS.map(lambda n: _with_text(e, n))
            ),
            elements(
                [(NS_CAPS, "c")],
                {
                    "hash": st.sampled_from(["sha-1", "sha-256", "md5", ""]),
                    "node": TEXT,
                    "ver": st.sampled_from(["", "x" * 300, "QgayPKawpkPSDYmwT/WM94uAlu0="]),
                },
                None,
            ),  # fmt: skip
            generic(1),
        ),
        4,
    ),
    text=False,
)


def _with_text(element: domish.Element, text: str) -> domish.Element:
    element.children = []
    element.addContent(text)
    return element


ROSTER_ITEM = elements(
    [(NS_ROSTER, "item"), ("urn:junk", "item")],
    {
        "jid": JIDS,
        "subscription": st.sampled_from(["none", "to", "from", "both", "remove", "junk"]),
        "ask": st.sampled_from(["subscribe", "junk"]),
        "name": TEXT,
        "approved": st.sampled_from(["true", "1", "x"]),
    },
    some(elements([(NS_ROSTER, "group")], {}, None), 3),
    text=False,
)
ROSTER_PUSHES = elements(
    [(NS_CLIENT, "iq")],
    {
        "from": st.sampled_from(["", "alice@localhost", "alice@localhost/pc", "evil@localhost"])
        | JIDS,
        "type": st.just("set"),
        "id": st.sampled_from(["push1", "push2"]),
    },
    st.lists(
        elements([(NS_ROSTER, "query")], {"ver": TEXT}, some(ROSTER_ITEM, 3), text=False),
        min_size=0,
        max_size=2,
    ),
    text=False,
)

FORM_FIELD = elements(
    [(NS_FORM, "field"), ("urn:junk", "field")],
    {
        "var": st.sampled_from(["FORM_TYPE", "pubsub#max_items", "x", ""]) | TEXT,
        "type": st.sampled_from(
            [
                "boolean",
                "fixed",
                "hidden",
                "jid-multi",
                "jid-single",
                "list-multi",
                "list-single",
                "text-multi",
                "text-private",
                "text-single",
                "junk",
                "",
            ]
        ),  # fmt: skip
        "label": TEXT,
    },
    some(
        elements(
            [(NS_FORM, "value"), (NS_FORM, "option"), (NS_FORM, "required"), (NS_FORM, "desc")],
            {"label": TEXT},
            some(elements([(NS_FORM, "value")], {}, None), 2),
        ),
        4,
    ),
    text=False,
)
FORMS = elements(
    [(NS_FORM, "x")],
    {"type": st.sampled_from(["form", "submit", "cancel", "result", "junk", ""])},
    some(
        FORM_FIELD
        | elements([(NS_FORM, "title"), (NS_FORM, "instructions"), (NS_FORM, "reported")], {}),
        6,
    ),
    text=False,
)

PS_ITEMS_ANSWER = elements(
    [(NS_CLIENT, "iq")],
    {"type": st.just("result"), "from": JIDS, "id": IDS},
    some(
        elements(
            [(NS_PUBSUB, "pubsub")],
            {},
            some(
                elements(
                    [(NS_PUBSUB, "items")],
                    {"node": TEXT},
                    some(elements([(NS_PUBSUB, "item")], {"id": IDS}, some(atom_entries(), 1)), 4),
                    text=False,
                )
                | elements(
                    [(NS_RSM, "set")],
                    {},
                    some(
                        elements(
                            [(NS_RSM, "first"), (NS_RSM, "last"), (NS_RSM, "count")],
                            {"index": NUMBERS},
                            None,
                        ).flatmap(lambda e: NUMBERS.map(lambda n: _with_text(e, n)))
                        | elements([(NS_RSM, "first"), (NS_RSM, "last")], {"index": NUMBERS}),
                        4,
                    ),
                    text=False,
                ),
                3,
            ),
            text=False,
        ),
        2,
    ),
    text=False,
)

JINGLE_ACTIONS = [
    "session-initiate", "session-accept", "session-terminate", "session-info", "content-add",
    "content-accept", "content-reject", "content-remove", "content-modify", "transport-info",
    "transport-replace", "transport-accept", "transport-reject", "description-info",
    "security-info", "junk", "",
]  # fmt: skip
JINGLE_PAYLOAD = st.one_of(
    elements(
        [(NS_FT, "description"), (NS_RTP, "description"), ("urn:test:app", "description")],
        {"media": st.sampled_from(["audio", "video", "x"]), "bad": TEXT},
        some(
            elements(
                [(NS_FT, "file"), (NS_RTP, "payload-type")],
                {"id": NUMBERS, "name": TEXT, "clockrate": NUMBERS},
                some(
                    elements(
                        [
                            (NS_FT, "name"),
                            (NS_FT, "size"),
                            (NS_FT, "date"),
                            (NS_FT, "media-type"),
                            ("urn:xmpp:hashes:2", "hash"),
                            (NS_FT, "range"),
                        ],
                        {
                            "algo": st.sampled_from(["sha-256", "md5", ""]),
                            "offset": NUMBERS,
                            "length": NUMBERS,
                        },
                        None,
                    ),  # fmt: skip
                    4,
                ),
            ),
            2,
        ),
    ),
    elements(
        [
            (NS_IBB_TR, "transport"),
            (NS_S5B_TR, "transport"),
            (NS_ICE, "transport"),
            ("urn:junk", "transport"),
        ],
        {
            "sid": IDS,
            "block-size": NUMBERS,
            "mode": st.sampled_from(["tcp", "udp", "x"]),
            "dstaddr": TEXT,
            "ufrag": TEXT,
            "pwd": TEXT,
        },
        some(
            elements(
                [
                    (NS_S5B_TR, "candidate"),
                    (NS_ICE, "candidate"),
                    (NS_S5B_TR, "activated"),
                    (NS_S5B_TR, "candidate-used"),
                    (NS_S5B_TR, "proxy-error"),
                ],
                {
                    "cid": IDS,
                    "host": TEXT,
                    "port": NUMBERS,
                    "jid": JIDS,
                    "priority": NUMBERS,
                    "type": st.sampled_from(["direct", "proxy", "host", "x"]),
                    "ip": TEXT,
                    "component": NUMBERS,
                    "foundation": TEXT,
                    "generation": NUMBERS,
                },
                None,
            ),  # fmt: skip
            3,
        ),
    ),  # fmt: skip
)
JINGLE_CHILD = st.one_of(
    elements(
        [(NS_JINGLE, "content")],
        {
            "creator": st.sampled_from(["initiator", "responder", "x"]),
            "name": st.sampled_from(["0", "a", "x" * 300]) | TEXT,
            "senders": st.sampled_from(["both", "initiator", "responder", "none", "x"]),
            "disposition": TEXT,
        },
        some(JINGLE_PAYLOAD, 3),
        text=False,
    ),
    elements(
        [(NS_JINGLE, "reason")],
        {},
        some(
            elements(
                [
                    (NS_JINGLE, "success"),
                    (NS_JINGLE, "decline"),
                    (NS_JINGLE, "junk"),
                    (NS_JINGLE, "text"),
                    (NS_JINGLE, "alternative-session"),
                ],
                {},
                some(elements([(NS_JINGLE, "sid")], {}, None), 1),
            ),  # fmt: skip
            3,
        ),
        text=False,
    ),
    generic(1),
)
JINGLES = elements(
    [(NS_JINGLE, "jingle")],
    {
        "action": st.sampled_from(JINGLE_ACTIONS),
        "sid": st.sampled_from(["s1", "s1", "s2", "s2", "", "x" * 300]) | IDS,
        "initiator": JIDS,
        "responder": JIDS,
    },
    some(JINGLE_CHILD, 4),
    text=False,
)


@st.composite
def jingle_iqs(draw: Any) -> domish.Element:
    iq = domish.Element((NS_CLIENT, "iq"))
    iq["type"] = "set"
    iq["id"] = f"j{draw(st.integers(0, 10**6))}"
    iq["from"] = _clean(draw(st.sampled_from(["bob@localhost/phone", "carol@localhost/evil"])))
    iq["to"] = ALICE
    iq.addChild(draw(JINGLES))
    return iq


SDP_LINES = st.one_of(
    st.sampled_from(
        [
            "v=0",
            "o=- 1 2 IN IP4 127.0.0.1",
            "s=-",
            "t=0 0",
            "a=group:BUNDLE 0 1",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
            "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
            "c=IN IP4 0.0.0.0",
            "a=mid:0",
            "a=ice-ufrag:abcd",
            "a=ice-pwd:" + "p" * 24,
            "a=fingerprint:sha-256 AB:CD",
            "a=setup:actpass",
            "a=rtpmap:111 opus/48000/2",
            "a=fmtp:111 minptime=10",
            "a=rtcp-fb:96 nack",
            "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
            "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
            "a=ssrc:1 cname:x",
            "a=ssrc-group:FID 1 2",
            "a=sendrecv",
            "a=sctp-port:5000",
            "a=end-of-candidates",
        ]
    ),  # fmt: skip
    st.builds(
        lambda key, value: f"{key}={value}",
        st.sampled_from(["a", "m", "c", "o", "v", "x", "b"]),
        st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=40),
    ),
    st.builds(
        lambda attr, value: f"a={attr}:{value}",
        st.sampled_from(
            [
                "rtpmap",
                "fmtp",
                "candidate",
                "ssrc",
                "extmap",
                "rtcp-fb",
                "mid",
                "fingerprint",
                "ssrc-group",
                "msid",
                "setup",
                "max-message-size",
            ]
        ),
        st.one_of(
            NUMBERS, st.text(st.characters(min_codepoint=32, max_codepoint=0x17F), max_size=30)
        ),
    ),  # fmt: skip
)
SDPS = st.lists(SDP_LINES, max_size=25).map(lambda lines: "\r\n".join(lines) + "\r\n")


def xml_bytes(strategy: st.SearchStrategy[domish.Element]) -> st.SearchStrategy[bytes]:
    return strategy.map(lambda e: e.toXml().encode("utf-8"))


@st.composite
def mutated(draw: Any, seeds: list[bytes]) -> bytes:
    """A valid seed with a few random byte edits (deletions, insertions, replacements)."""
    data = bytearray(draw(st.sampled_from(seeds)))
    rng = random.Random(draw(st.integers(0, 2**32)))
    for _ in range(draw(st.integers(1, 6))):
        position = rng.randrange(len(data) + 1)
        edit = rng.randrange(3)
        if edit == 0 and position < len(data):
            del data[position : position + rng.randrange(1, 8)]
        elif edit == 1:
            data[position:position] = rng.choice(
                [b"<", b">", b"'", b"&", b"/>", b"\xff", b"\x00", b"=", b"<x>", b"&amp;", b"]]>"]
            )
        elif position < len(data):
            data[position] = rng.randrange(256)
    return bytes(data)


SEEDS: dict[str, list[bytes]] = {
    "message": [
        b"<message from='bob@localhost/phone' to='alice@localhost/pc' type='chat' id='m1'>"
        b"<body>hello</body><thread parent='p'>t</thread></message>",
    ],
    "presence": [
        b"<presence from='bob@localhost/phone'><show>away</show><priority>5</priority>"
        b"<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/></presence>",
        b"<presence from='bob@localhost' type='subscribe'/>",
    ],
    "roster_push": [
        b"<iq type='set' id='push1'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' "
        b"subscription='both' name='Bob'><group>g</group></item></query></iq>",
    ],
    "pubsub_event": [
        b"<message from='pubsub.localhost'><event xmlns='http://jabber.org/protocol/pubsub#event'>"
        b"<items node='blog'><item id='i1'><p xmlns='urn:x'>hi</p></item><retract id='i2'/>"
        b"</items><delete node='d'><redirect uri='xmpp:x'/></delete></event></message>",
    ],
    "pubsub_items": [
        b"<iq type='result'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n'>"
        b"<item id='1'/></items><set xmlns='http://jabber.org/protocol/rsm'>"
        b"<first index='0'>1</first><last>1</last><count>1</count></set></pubsub></iq>",
    ],
    "atom_entry": [
        b"<entry xmlns='http://www.w3.org/2005/Atom'><id>i</id><title type='xhtml'>"
        b"<div xmlns='http://www.w3.org/1999/xhtml'><p>t</p></div></title>"
        b"<published>2024-01-01T00:00:00Z</published><author><name>a</name>"
        b"<uri>xmpp:a@b</uri></author><link rel='replies' href='xmpp:x?;node=n'/></entry>",
    ],
    "data_form": [
        b"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
        b"<value>urn:x</value></field><field var='b' type='boolean'><value>1</value></field>"
        b"<field var='l' type='list-multi'><value>a</value><option><value>a</value></option>"
        b"</field><field var='j' type='jid-single'><value>a@b</value></field></x>",
    ],
    "jingle": [
        b"<jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='s1' "
        b"initiator='bob@localhost/phone'><content creator='initiator' name='0' "
        b"senders='initiator'><description xmlns='urn:xmpp:jingle:apps:file-transfer:5'><file>"
        b"<name>x</name><size>3</size></file></description><transport "
        b"xmlns='urn:xmpp:jingle:transports:ibb:1' sid='i' block-size='4096'/></content>"
        b"<reason><success/></reason></jingle>",
    ],
    "sdp": [
        b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        b"c=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:pppppppppppppppppppppppp"
        b"\r\na=rtpmap:111 opus/48000/2\r\na=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ "
        b"host\r\n",
    ],
    "stream": [b"<message to='a@b'><body>x</body></message><presence/><iq type='get' id='1'/>"],
}
SHAPED: dict[str, st.SearchStrategy[bytes]] = {
    "message": xml_bytes(MESSAGES),
    "presence": xml_bytes(PRESENCES),
    "roster_push": xml_bytes(ROSTER_PUSHES),
    "pubsub_event": xml_bytes(
        elements([(NS_CLIENT, "message")], MESSAGE_ATTRS, some(PS_EVENT, 2), text=False)
    ),  # fmt: skip
    "pubsub_items": xml_bytes(PS_ITEMS_ANSWER),
    "atom_entry": xml_bytes(atom_entries()),
    "data_form": xml_bytes(FORMS),
    "jingle": xml_bytes(JINGLES),
    "sdp": SDPS.map(lambda text: text.encode("utf-8")),
    "stream": st.lists(xml_bytes(MESSAGES | PRESENCES | jingle_iqs()), max_size=4).map(b"".join),
}
TARGETS = sorted(SHAPED)


def test_every_target_has_strategies() -> None:
    assert sorted(ft.TARGETS) == sorted(f"fuzz_{name}" for name in TARGETS)
    assert sorted(SEEDS) == TARGETS


def _drive(name: str, data: bytes) -> None:
    with no_errors():
        ft.TARGETS[f"fuzz_{name}"](data)


@pytest.mark.parametrize("name", TARGETS)
def test_shaped_input(name: str) -> None:
    """Stanzas of the parser's own shape, with hostile values."""

    @FAST
    @given(SHAPED[name])
    def run(data: bytes) -> None:
        _drive(name, data)

    run()


@pytest.mark.parametrize("name", TARGETS)
def test_mutated_seeds(name: str) -> None:
    """Valid input with random byte edits (malformed, truncated, invalid UTF-8)."""

    @FAST
    @given(mutated(SEEDS[name]))
    def run(data: bytes) -> None:
        _drive(name, data)

    run()


@pytest.mark.parametrize("name", TARGETS)
def test_random_bytes(name: str) -> None:
    @settings(FAST, max_examples=50)
    @given(st.binary(max_size=300))
    def run(data: bytes) -> None:
        _drive(name, data)

    run()


def test_seeds_are_accepted() -> None:
    """The seeds are valid (the mutations start from input the parsers take)."""
    for name, seeds in SEEDS.items():
        for seed in seeds:
            _drive(name, seed)
    assert xml_tools.parse(SEEDS["jingle"][0]) is not None
    assert atom.parse_entry(SEEDS["atom_entry"][0])["title"] == "t"


# --- entity expansion, oversized payloads --------------------------------------------------------

BILLION_LAUGHS = (
    b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
    + b"".join(
        b"<!ENTITY lol%d '%s'>" % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b"]><message><body>&lol9;</body></message>"
)
EXTERNAL_ENTITY = (
    b"<!DOCTYPE x [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>"
    b"<entry xmlns='http://www.w3.org/2005/Atom'><id>&xxe;</id></entry>"
)


def test_entity_expansion_refused_everywhere() -> None:
    """A DOCTYPE (entity declarations: billion laughs, external entities) is refused by the
    stream (closed, nothing delivered), by the element parser and by the Atom parser."""
    with no_errors():
        result = ft.feed_stream(BILLION_LAUGHS)
        assert result.closed and result.stanzas == []
        result = ft.feed_stream(b"<message><body>&lol;</body></message>")  # undeclared
        assert result.closed and result.stanzas == []
        for payload in (BILLION_LAUGHS, EXTERNAL_ENTITY):
            with pytest.raises(xml_tools.XMLParseError):
                xml_tools.parse(payload)
            with pytest.raises(atom.AtomError, match="DOCTYPE"):
                atom.parse_entry(payload)
        # a predefined entity is fine
        assert ft.feed_stream(b"<message><body>&amp;&lt;</body></message>").stanzas


def test_oversized_stanza_refused() -> None:
    """A stanza over the stream's size limit closes the stream (as read from the network: in
    chunks; Twisted checks the size after each read) and is not delivered; so does one with
    too many elements."""
    big = b"<message><body>" + b"x" * (ft.STREAM_MAX_STANZA_SIZE + 10_000) + b"</body></message>"
    with no_errors():
        result = ft.feed_stream(big, chunk=4096)
        assert result.closed and result.stanzas == []
        many = b"<message>" + b"<x/>" * (ft.STREAM_MAX_ELEMENTS + 10) + b"</message>"
        result = ft.feed_stream(many, chunk=4096)
        assert result.closed and result.stanzas == []
        # under the limits, the same stream goes on
        result = ft.feed_stream((b"<message><body>" + b"x" * 1000 + b"</body></message>") * 3)
        assert not result.closed


def test_daemon_limits_are_bounded() -> None:
    """The daemon's own limits (core/xmpp.py) are finite and documented."""
    from libervia.backend.core import xmpp
    from libervia.backend.plugins.plugin_xep_0060.events import MAX_EVENT_ITEMS
    from libervia.backend.plugins.plugin_xep_0166.elements import MAX_CONTENTS, MAX_ID_LENGTH

    assert xmpp.MAX_STANZA_SIZE == 48 * 1024 * 1024
    assert xmpp.MAX_STANZA_ELEMENTS == 600_000
    assert atom.MAX_ENTRY_BYTES == 1024 * 1024
    assert (MAX_EVENT_ITEMS, MAX_CONTENTS, MAX_ID_LENGTH) == (10_000, 64, 256)
    with pytest.raises(atom.AtomError, match="too big"):
        atom.parse_entry(b"<entry xmlns='http://www.w3.org/2005/Atom'>" + b" " * (2 << 20))


# --- a logged-in session fed hostile stanzas ---------------------------------------------------


def collect(strategy: st.SearchStrategy[Any], n: int) -> list[Any]:
    """``n`` examples of ``strategy`` (derandomized: the same every run)."""
    found: list[Any] = []

    @settings(FAST, max_examples=n, phases=[hypothesis_generate()])
    @given(strategy)
    def run(value: Any) -> None:
        found.append(value)

    run()
    return found


def hypothesis_generate() -> Any:
    from hypothesis import Phase

    return Phase.generate


async def settle(rounds: int = 30) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def _session(tmp_path: Path) -> tuple[Any, Any, Any, FakeReactor]:
    reactor = FakeReactor()
    host = await started_host(tmp_path, reactor)
    client, stream = await logged_in(host, "alice", ALICE)
    await settle()
    stream.sent()
    return host, client, stream, reactor


def _answered(sent: list[domish.Element], iq_ids: list[str]) -> list[str]:
    """The ids of the IQ requests without an answer among ``sent``."""
    answers = {
        e.getAttribute("id") for e in sent if e.name == "iq" and e.getAttribute("type") in
        ("result", "error")
    }  # fmt: skip
    return [i for i in iq_ids if i not in answers]


async def _feed(
    host: Any, client: Any, stream: Any, stanzas: list[domish.Element], per_check: Callable
) -> dict[str, int]:
    """Feed stanzas one by one; IQ get/set must all be answered; returns counters."""
    counts = {"stanzas": 0, "iq": 0}
    for element in stanzas:
        xml = element.toXml()
        expect = None
        if element.name == "iq" and element.getAttribute("type") in ("get", "set"):
            iq_id = f"h{counts['stanzas']}"
            element["id"] = iq_id
            xml = element.toXml()
            expect = iq_id
            counts["iq"] += 1
        stream.receive(xml)
        await settle()
        sent = stream.sent()
        if expect is not None:
            assert not _answered(sent, [expect]), f"no answer to {xml[:500]}"
        per_check(sent)
        counts["stanzas"] += 1
        assert client.is_connected(), f"stream closed by {xml[:500]}"
    return counts


async def _still_healthy(host: Any, client: Any, stream: Any) -> None:
    """A normal message reaches the history; a ping is answered."""
    stream.receive(
        "<message from='bob@localhost/phone' to='alice@localhost/pc' type='chat' id='ok1'>"
        "<body>still alive</body></message>"
    )
    stream.receive(
        "<iq type='get' id='ping1' from='localhost' to='alice@localhost/pc'>"
        "<ping xmlns='urn:xmpp:ping'/></iq>"
    )
    for _ in range(200):
        await settle()
        if any(
            name == "message_new" and args[4] == {"": "still alive"}
            for name, args in host.bridge.emitted
        ):
            break
        await asyncio.sleep(0.001)  # the history writer (database thread)
    sent = stream.sent_xml()
    assert any("id='ping1'" in x and "type='result'" in x for x in sent), sent
    assert any(
        name == "message_new" and args[4] == {"": "still alive"}
        for name, args in host.bridge.emitted
    )


def _stanza(strategy: st.SearchStrategy[domish.Element], **attrs: str) -> Any:
    def fix(element: domish.Element) -> domish.Element:
        for key, value in attrs.items():
            element[key] = value
        return element

    return strategy.map(fix)


@aio
async def test_session_survives_hostile_stanzas(tmp_path: Path) -> None:
    """Messages (with carbons, archive results, pubsub events, JMI), presences and roster
    pushes of hostile shape fed to a logged-in profile: no ERROR logged, every IQ answered,
    the stream stays up and a normal message afterwards reaches the history."""
    stanzas = (
        collect(MESSAGES, 250)
        + collect(PRESENCES, 200)
        + collect(ROSTER_PUSHES, 100)
        + collect(_stanza(MESSAGES, **{"from": "pubsub.localhost"}), 50)
        + collect(
            elements(
                [(NS_CLIENT, "message")],
                {
                    "from": st.sampled_from(
                        [
                            "pubsub.localhost",
                            "alice@localhost",
                            "bob@localhost",
                            "carol@localhost/evil",
                            "pubsub.evil.example",
                        ]
                    )
                },
                some(PS_EVENT, 2),
                text=False,
            ),
            150,
        )  # fmt: skip
    )
    host, client, stream, _ = await _session(tmp_path)
    try:
        with no_errors():
            counts = await _feed(host, client, stream, stanzas, lambda sent: None)
            await host.plugins["XEP-0060"].events_drained(client)
            await _still_healthy(host, client, stream)
        assert counts["stanzas"] == len(stanzas) >= 700
        # roster pushes from anyone but our account were refused, never applied
        assert "evil@localhost" not in client.roster.contacts
    finally:
        await host.stop()


@aio
async def test_session_survives_hostile_jingle(tmp_path: Path) -> None:
    """Jingle IQs of hostile shape (every action, junk contents, transports, reasons) from two
    peers, many about live sessions (one active, one pending): each is answered (result or
    error), no ERROR logged, the session stays usable."""
    stanzas = collect(jingle_iqs(), 400)
    host, client, stream, reactor = await _session(tmp_path)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    try:
        with no_errors():
            # live sessions for the hostile requests to hit: s1 from bob (accepted: active),
            # s2 from carol (pending)
            stream.receive(_file_offer("s1"))
            stream.receive(_file_offer("s2", sender="carol@localhost/evil"))
            await settle(100)
            stream.sent()
            (action_id,) = [
                a[1] for n, a in host.bridge.emitted
                if n == "action_new" and json.loads(a[0]).get("session_id") == "s1"
            ]  # fmt: skip
            host.actions.launch("alice", action_id, {"accept": True, "path": str(inbox)})
            await settle(100)
            stream.sent()
            counts = await _feed(host, client, stream, stanzas, lambda sent: None)
            reactor.advance(3600)  # every pending timer (session timeouts, gone peers)
            await settle()
            stream.sent()
            await _still_healthy(host, client, stream)
        assert counts["iq"] == len(stanzas)
    finally:
        await host.stop()


@aio
async def test_presence_with_invalid_from_is_a_logged_rejection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: a presence from an invalid JID logged a traceback (wokkel's parser raised
    in an observer); now a warning, nothing emitted."""
    host, client, stream, _ = await _session(tmp_path)
    try:
        before = len(host.bridge.emitted)
        with no_errors(), caplog.at_level(logging.WARNING):
            stream.receive("<presence from='a@@b'/>")
            stream.receive("<presence from='bob@localhost/x' to='@@'/>")
            stream.receive("<presence/>")
            stream.receive("<presence from='bob@localhost/r'><priority>999</priority></presence>")
            await settle()
        assert "ignoring a presence with an invalid JID" in caplog.text
        assert "presence without sender" in caplog.text
        updates = [a for n, a in host.bridge.emitted[before:] if n == "presence_update"]
        assert [(a[0], a[2]) for a in updates] == [("bob@localhost/r", 127)]
    finally:
        await host.stop()


@aio
async def test_roster_push_malformed_gets_bad_request(tmp_path: Path) -> None:
    """Regression: a roster push without item, with several items or an invalid JID raised
    in wokkel (traceback, internal-server-error); now a logged bad-request."""
    host, client, stream, _ = await _session(tmp_path)
    try:
        with no_errors():
            for n, inner in enumerate(
                [
                    "",
                    "<item/>",
                    "<item jid='a@@b'/>",
                    "<item jid='a@b'/><item jid='c@d'/>",
                ]
            ):
                stream.receive(
                    f"<iq type='set' id='r{n}'><query xmlns='jabber:iq:roster'>{inner}</query></iq>"
                )
                await settle()
                (answer,) = stream.sent_xml()
                assert f"id='r{n}'" in answer and "type='error'" in answer, answer
                assert "bad-request" in answer, answer
            # a spoofed push from someone else: service-unavailable, not applied
            stream.receive(
                "<iq type='set' id='s1' from='evil@localhost/x'><query xmlns='jabber:iq:roster'>"
                "<item jid='evil@localhost' subscription='both'/></query></iq>"
            )
            await settle()
            (answer,) = stream.sent_xml()
            assert "service-unavailable" in answer, answer
        assert "evil@localhost" not in client.roster.contacts
    finally:
        await host.stop()


@aio
async def test_pubsub_events_only_from_subscribed_services(tmp_path: Path) -> None:
    """The acceptance rule of notifications (plugin_xep_0060 docstring): our server and its
    components, our PEP, subscribed nodes, contacts' PEP with +notify; the rest is ignored
    (no trigger, no ps_event, logged)."""
    host, client, stream, _ = await _session(tmp_path)
    ps = host.plugins["XEP-0060"]
    seen: list[tuple[str, str]] = []

    async def record(client: Any, event: Any) -> None:
        seen.append((event.service.full(), event.node))

    host.trigger.add("XEP-0060_event", record)

    def event(sender: str, node: str) -> str:
        return (
            f"<message from='{sender}' to='{ALICE}'><event xmlns='{NS_EVENT}'>"
            f"<items node='{node}'><item id='i1'><p xmlns='urn:x'>hi</p></item></items>"
            "</event></message>"
        )

    try:
        from twisted.words.protocols.jabber.jid import JID

        ps.add_known_subscription(client, JID("pubsub.remote.example"), "followed")
        stream.receive(
            "<iq type='set' id='push'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' "
            "subscription='both'/><item jid='dave@localhost' subscription='from'/></query></iq>"
        )  # two items: refused
        stream.receive(
            "<iq type='set' id='push2'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' "
            "subscription='both'/></query></iq>"
        )
        await settle()
        host.plugins["XEP-0030"].add_feature("urn:xmpp:microblog:0+notify")
        accepted = [
            ("pubsub.localhost", "news"),
            ("localhost", "x"),
            ("alice@localhost", "anything"),
            ("pubsub.remote.example", "followed"),
            ("bob@localhost", "urn:xmpp:microblog:0"),
        ]
        refused = [
            ("carol@localhost/evil", "news"),  # a client
            ("pubsub.remote.example", "other"),  # not subscribed
            ("pubsub.evil.example", "news"),
            ("bob@localhost", "urn:xmpp:other"),  # no +notify
            ("dave@localhost", "urn:xmpp:microblog:0"),  # not a contact we follow
            ("bob@localhost/phone", "urn:xmpp:microblog:0"),
        ]
        for sender, node in refused + accepted:
            stream.receive(event(sender, node))
        await ps.events_drained(client)
        await settle()
        assert seen == accepted
        signalled = [(a[1], a[2]) for n, a in host.bridge.emitted if n == "ps_event"]
        assert signalled == accepted
    finally:
        await host.stop()


def _file_offer(sid: str, sender: str = "bob@localhost/phone", name: str = "f.bin") -> str:
    return (
        f"<iq type='set' id='{sid}' from='{sender}' to='{ALICE}'>"
        f"<jingle xmlns='{NS_JINGLE}' action='session-initiate' sid='{sid}' initiator='{sender}'>"
        "<content creator='initiator' name='0' senders='initiator'>"
        f"<description xmlns='{NS_FT}'><file><name>{name}</name><size>3</size></file>"
        f"</description><transport xmlns='{NS_IBB_TR}' sid='i{sid}' block-size='4096'/>"
        "</content></jingle></iq>"
    )


@aio
async def test_session_initiate_flood_is_bounded(tmp_path: Path) -> None:
    """More than ``jingle_max_pending_per_peer`` (10) offers pending from one peer: the rest
    are refused with resource-constraint, the user is asked 10 times only; another peer is
    not affected."""
    host, client, stream, _ = await _session(tmp_path)
    try:
        with no_errors():
            for n in range(15):
                stream.receive(_file_offer(f"flood{n}"))
            stream.receive(_file_offer("other", sender="dave@localhost/pc"))
            await settle(100)
            answers = {e["id"]: e for e in stream.sent() if e.name == "iq" and e.getAttribute(
                "type") in ("result", "error")}  # fmt: skip
        kinds = [answers[f"flood{n}"]["type"] for n in range(15)]
        assert kinds == ["result"] * 10 + ["error"] * 5, kinds
        assert "resource-constraint" in answers["flood14"].toXml()
        assert answers["other"]["type"] == "result"
        asked = [a for n, a in host.bridge.emitted if n == "action_new"]
        assert len(asked) == 11
    finally:
        await host.stop()


async def _serve(stream: Any, task: asyncio.Future[Any], answer: domish.Element) -> None:
    """Answer what the task asks the service: items requests with ``answer`` (its id
    replaced), disco#info with an empty identity, anything else with item-not-found."""
    for _ in range(200):
        await settle(5)
        for request in stream.sent():
            if request.name != "iq" or request.getAttribute("type") not in ("get", "set"):
                continue
            iq_id, sender = request["id"], request.getAttribute("to") or "localhost"
            if next(request.elements(NS_PUBSUB, "pubsub"), None) is not None:
                stream.receive(_with_id(answer, iq_id, sender))
            elif "disco#info" in request.toXml():
                stream.receive(
                    f"<iq type='result' id='{iq_id}' from='{sender}'>"
                    "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
                )
            else:
                stream.receive(
                    f"<iq type='error' id='{iq_id}' from='{sender}'><error type='cancel'>"
                    "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
                )
        if task.done():
            return
        await asyncio.sleep(0.001)  # the cache's trigger reads the database (a thread)


def _with_id(answer: domish.Element, iq_id: str, sender: str) -> str:
    copy = xml_tools.parse(answer.toXml())
    copy["id"], copy["from"], copy["type"] = iq_id, sender, "result"
    return copy.toXml()


@aio
async def test_hostile_items_answers_through_the_bridge(tmp_path: Path) -> None:
    """A service answering items requests (ps_items_get, and mb_get which parses Atom) with
    hostile pages: each bridge call returns JSON or raises a LiberviaError, nothing else, and
    nothing is logged at ERROR level."""
    from libervia.backend.core.exceptions import LiberviaError

    answers = collect(PS_ITEMS_ANSWER, 60)
    host, client, stream, _ = await _session(tmp_path)
    methods = host.bridge.methods
    outcomes = {"ok": 0, "refused": 0}
    try:
        with no_errors():
            for answer in answers:
                for name, args in (
                    ("ps_items_get", ("pubsub.localhost", "n", -1, [], "", '{"use_cache": false}')),
                    ("mb_get", ("pubsub.localhost", "", 10, [], '{"use_cache": false}')),
                ):
                    task = asyncio.ensure_future(methods[name](*args, "alice"))
                    await _serve(stream, task, answer)
                    assert task.done(), f"{name} stuck on {answer.toXml()[:300]}"
                    try:
                        json.loads(task.result())
                        outcomes["ok"] += 1
                    except LiberviaError:
                        outcomes["refused"] += 1
        print(f"\nitems answers through the bridge: {outcomes}")
        assert outcomes["ok"] and sum(outcomes.values()) == 2 * len(answers), outcomes
    finally:
        await host.stop()


@aio
async def test_burst_is_parsed_a_slice_per_loop_turn(tmp_path: Path) -> None:
    """A 200-stanza burst in one read (core/xmpp.py ``PACE_SLICE``): handled a slice per turn
    of the event loop (other tasks run in between), all of it, in order; reading is paused
    meanwhile and resumed after."""
    from libervia.backend.core.xmpp import PACE_SLICE

    host, client, stream, _ = await _session(tmp_path)
    seen: list[str] = []
    stream.xs.addObserver("/message", lambda e: seen.append(e["id"]), priority=100)
    burst = "".join(
        f"<message from='bob@localhost/phone' to='{ALICE}' id='b{n}' type='headline'>"
        f"<x xmlns='urn:junk'>{'p' * 400}</x></message>"
        for n in range(200)
    )
    assert len(burst) > 10 * PACE_SLICE
    try:
        with no_errors():
            stream.receive(burst)
            first = len(seen)
            assert 0 < first < 40, first  # one slice only, at once
            assert stream.transport.producerState == "paused"
            await asyncio.sleep(0)
            assert len(seen) > first  # the next slice, one turn later
            await settle(100)
            assert seen == [f"b{n}" for n in range(200)]
            assert stream.transport.producerState == "producing"
            await _still_healthy(host, client, stream)
    finally:
        await host.stop()
