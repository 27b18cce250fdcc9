"""tools.atom: XEP-0277 Atom entries parsed to dicts (hardened), built back."""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree

from libervia.backend.tools.atom import (
    MAX_ENTRY_BYTES,
    AtomError,
    build_entry,
    format_date,
    parse_date,
    parse_entry,
    xhtml_div,
)

# XEP-0277 §2.3 style entry, with rich content and a comments link
ENTRY = """<entry xmlns='http://www.w3.org/2005/Atom' xml:lang='en'>
  <title type='text'>hanging out at the Caf&#233; Napolitano</title>
  <title type='xhtml'><div xmlns='http://www.w3.org/1999/xhtml'>hanging out at the
    <strong>Caf&#233; Napolitano</strong></div></title>
  <content type='xhtml'><div xmlns='http://www.w3.org/1999/xhtml'><p>Great <em>coffee</em>.</p
  ><p>See you<br/>there</p></div></content>
  <link rel='alternate' type='text/html'
        href='http://montague.lit/romeo/posts/1cb57d9c1c695e3f0d5efa4bce1a4d1e'/>
  <link rel='replies' title='comments'
        href='xmpp:pubsub.montague.lit?;node=urn%3Axmpp%3Amicroblog%3A0%3Acomments%2F1cb5'/>
  <link rel='related' href='xmpp:juliet@capulet.lit?;node=urn%3Axmpp%3Amicroblog%3A0;item=x'/>
  <category term='coffee'/>
  <category term='travel'/>
  <author><name>Romeo Montague</name><uri>xmpp:romeo@montague.lit</uri></author>
  <id>tag:montague.lit,2008-05-08:posts-1cb57d9c1c695e3f0d5efa4bce1a4d1e</id>
  <published>2008-05-08T18:30:02Z</published>
  <updated>2008-05-08T18:30:02.250Z</updated>
</entry>"""


def test_parse_xep_0277_entry() -> None:
    """Every field of a XEP-0277 entry lands in the documented dict."""
    data = parse_entry(ENTRY, item_id="1cb57d9c1c695e3f0d5efa4bce1a4d1e")
    assert data == {
        "id": "1cb57d9c1c695e3f0d5efa4bce1a4d1e",
        "atom_id": "tag:montague.lit,2008-05-08:posts-1cb57d9c1c695e3f0d5efa4bce1a4d1e",
        "title": "hanging out at the Café Napolitano",
        "title_xhtml": (
            '<div xmlns="http://www.w3.org/1999/xhtml">hanging out at the\n'
            "    <strong>Café Napolitano</strong></div>"
        ),
        "content": "Great coffee.\n\nSee you\nthere",
        "content_xhtml": (
            '<div xmlns="http://www.w3.org/1999/xhtml"><p>Great <em>coffee</em>.</p>'
            "<p>See you<br/>there</p></div>"
        ),
        "author": {
            "name": "Romeo Montague",
            "jid": "romeo@montague.lit",
            "uri": "xmpp:romeo@montague.lit",
        },
        "published": 1210271402.0,
        "updated": 1210271402.25,
        "tags": ["coffee", "travel"],
        "links": [
            {
                "href": "http://montague.lit/romeo/posts/1cb57d9c1c695e3f0d5efa4bce1a4d1e",
                "rel": "alternate",
                "type": "text/html",
            },
            {
                "href": "xmpp:juliet@capulet.lit?;node=urn%3Axmpp%3Amicroblog%3A0;item=x",
                "rel": "related",
                "type": "",
            },
        ],
        "comments": ["xmpp:pubsub.montague.lit?;node=urn%3Axmpp%3Amicroblog%3A0%3Acomments%2F1cb5"],
        "language": "en",
    }


def test_parse_minimal_entry_without_atom_id() -> None:
    """An entry without atom:id takes the item id; absent fields get empty values."""
    data = parse_entry(
        b"<entry xmlns='http://www.w3.org/2005/Atom'><title>hi</title>"
        b"<published>2020-01-01T00:00:00Z</published></entry>",
        item_id="item-1",
    )
    assert data == {
        "id": "item-1",
        "atom_id": "",
        "title": "hi",
        "content": "",
        "author": {"name": "", "jid": "", "uri": ""},
        "published": 1577836800.0,
        "updated": 1577836800.0,
        "tags": [],
        "links": [],
        "comments": [],
    }


def test_parse_without_item_id_uses_atom_id() -> None:
    """Without an item id, ``id`` is the atom:id; neither is an AtomError."""
    entry = (
        "<entry xmlns='http://www.w3.org/2005/Atom'><id>urn:x</id>"
        "<updated>2020-01-01T00:00:00Z</updated></entry>"
    )
    assert parse_entry(entry)["id"] == "urn:x"
    with pytest.raises(AtomError, match="without id"):
        parse_entry(entry.replace("<id>urn:x</id>", ""))


def test_parse_html_content() -> None:
    """type='html' (escaped markup) becomes XHTML plus text; scripts give no text."""
    data = parse_entry(
        "<entry xmlns='http://www.w3.org/2005/Atom'><id>i</id>"
        "<updated>2020-01-01T00:00:00Z</updated><content type='html'>"
        "&lt;p&gt;Hi &lt;i&gt;there&lt;/i&gt;&lt;br&gt;you&lt;/p&gt;"
        "&lt;script&gt;alert(1)&lt;/script&gt;</content></entry>"
    )
    assert data["content"] == "Hi there\nyou"
    assert data["content_xhtml"] == (
        '<div xmlns="http://www.w3.org/1999/xhtml"><p>Hi <i>there</i><br/>you</p>'
        "<script>alert(1)</script></div>"
    )


def test_parse_prefixed_xhtml_is_canonical() -> None:
    """Prefixed Atom and XHTML namespaces give the same unprefixed XHTML."""
    data = parse_entry(
        "<a:entry xmlns:a='http://www.w3.org/2005/Atom' xmlns:h='http://www.w3.org/1999/xhtml'>"
        "<a:id>i</a:id><a:updated>2020-01-01T00:00:00Z</a:updated>"
        "<a:content type='xhtml'><h:div><h:p>x</h:p></h:div></a:content></a:entry>"
    )
    assert data["content_xhtml"] == '<div xmlns="http://www.w3.org/1999/xhtml"><p>x</p></div>'
    assert data["content"] == "x"


def test_non_xmpp_author_uri() -> None:
    """An author URI that is not xmpp: gives no JID; an xmpp: URI is percent-decoded."""
    entry = (
        "<entry xmlns='http://www.w3.org/2005/Atom'><id>i</id>"
        "<updated>2020-01-01T00:00:00Z</updated><author><name>N</name><uri>{}</uri></author>"
        "</entry>"
    )
    assert parse_entry(entry.format("https://example.org/n"))["author"]["jid"] == ""
    assert parse_entry(entry.format("xmpp:n%C3%A9@example.org?message"))["author"] == {
        "name": "N",
        "jid": "né@example.org",
        "uri": "xmpp:n%C3%A9@example.org?message",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2008-05-08T18:30:02Z", 1210271402.0),
        ("2008-05-08T18:30:02.5Z", 1210271402.5),
        ("2008-05-08T18:30:02.123456789Z", 1210271402.123456),
        ("2008-05-08T20:30:02+02:00", 1210271402.0),
        ("2008-05-08T13:00:02.25-05:30", 1210271402.25),
        ("2008-05-08T18:30:02", 1210271402.0),  # no offset: UTC
    ],
)
def test_parse_date(text: str, expected: float) -> None:
    """XEP-0082 date-times, with or without fractions, with Z or offsets."""
    assert parse_date(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2008-05-08", "2008-13-08T18:30:02Z", "2008-05-08T18:30:02+24:00"]
)
def test_invalid_date(text: str) -> None:
    """Anything else is an AtomError (so an entry with such a date is refused)."""
    with pytest.raises(AtomError):
        parse_date(text)


def test_format_date() -> None:
    """UTC with Z; microseconds only when there are some; parse_date reads it back."""
    assert format_date(1210271402.0) == "2008-05-08T18:30:02Z"
    assert format_date(1210271402.25) == "2008-05-08T18:30:02.250000Z"
    assert parse_date(format_date(1210271402.25)) == 1210271402.25


def test_build_entry_literal() -> None:
    """mb_send data gives this exact Atom entry."""
    xml = build_entry(
        {
            "title": "Hello",
            "content_xhtml": "<p>Rich <b>text</b></p>",
            "tags": ["t1", "t2"],
            "language": "fr",
            "comments": "xmpp:pubsub.example.org?;node=comments-1",
            "link": "https://example.org/post",
        },
        author_jid="juliet@capulet.lit/balcony",
        author_name="Juliet",
        item_id="post 1",
        now=1700000000.0,
    )
    assert xml == (
        '<entry xmlns="http://www.w3.org/2005/Atom" xml:lang="fr">'
        '<title type="text">Hello</title>'
        '<content type="text">Rich text</content>'
        '<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">'
        "<p>Rich <b>text</b></p></div></content>"
        "<author><name>Juliet</name><uri>xmpp:juliet@capulet.lit</uri></author>"
        "<id>tag:juliet@capulet.lit,2023-11-14:posts-post%201</id>"
        "<published>2023-11-14T22:13:20Z</published>"
        "<updated>2023-11-14T22:13:20Z</updated>"
        '<category term="t1"/><category term="t2"/>'
        '<link href="https://example.org/post" rel="alternate"/>'
        '<link rel="replies" title="comments" href="xmpp:pubsub.example.org?;node=comments-1"/>'
        "</entry>"
    )


def test_build_minimal_entry() -> None:
    """Plain text only; no name: the bare JID; a JID not valid in a tag URI: its domain."""
    xml = build_entry(
        {"content": "just text"},
        author_jid="ju+liet@capulet.lit",
        author_name=None,
        item_id="x",
        now=0.0,
    )
    assert xml == (
        '<entry xmlns="http://www.w3.org/2005/Atom">'
        '<content type="text">just text</content>'
        "<author><name>ju+liet@capulet.lit</name><uri>xmpp:ju+liet@capulet.lit</uri></author>"
        "<id>tag:capulet.lit,1970-01-01:posts-x</id>"
        "<published>1970-01-01T00:00:00Z</published>"
        "<updated>1970-01-01T00:00:00Z</updated></entry>"
    )


SEND_DATA: list[dict[str, Any]] = [
    {"content": "plain"},
    {"title": "T", "content": "c", "tags": ["a"], "language": "de"},
    {"content_xhtml": "<div xmlns='http://www.w3.org/1999/xhtml'><p>a</p>b<br/>c</div>"},
    {"title_xhtml": "a <em>b</em>", "content": "text", "content_xhtml": "<p>rich</p>"},
    {"content": "x", "comments": ["xmpp:s?;node=a", "xmpp:s?;node=b"]},
    {"content": "x", "links": [{"href": "h", "rel": "enclosure", "type": "image/png"}]},
]


@pytest.mark.parametrize("data", SEND_DATA)
def test_round_trip(data: dict[str, Any]) -> None:
    """parse_entry gives build_entry's data back; building the parsed dict changes nothing."""
    kwargs: dict[str, Any] = {
        "author_jid": "romeo@montague.lit",
        "author_name": "Romeo",
        "item_id": "i1",
        "now": 1700000000.125,
    }
    xml = build_entry(data, **kwargs)
    parsed = parse_entry(xml, item_id="i1")
    for key in ("title", "content", "language"):
        if key in data:
            assert parsed[key] == data[key]
    for key in ("title_xhtml", "content_xhtml"):
        if key in data:
            assert parsed[key] == etree.tostring(xhtml_div(data[key]), encoding="unicode")
    assert parsed["tags"] == data.get("tags", [])
    assert parsed["comments"] == data.get("comments", [])
    assert parsed["links"] == data.get("links", [])
    assert parsed["author"] == {
        "name": "Romeo",
        "jid": "romeo@montague.lit",
        "uri": "xmpp:romeo@montague.lit",
    }
    assert parsed["published"] == parsed["updated"] == 1700000000.125
    assert parsed["atom_id"] == "tag:romeo@montague.lit,2023-11-14:posts-i1"
    # the parsed dict is a fixed point: build it again (a later "now" only moves "updated")
    again = parse_entry(build_entry(parsed, **{**kwargs, "now": 1700000100.0}), item_id="i1")
    assert again == {**parsed, "updated": 1700000100.0}


def test_round_trip_of_received_entry() -> None:
    """A received XEP-0277 entry parsed, built and parsed again is unchanged."""
    parsed = parse_entry(ENTRY, item_id="p1")
    rebuilt = build_entry(
        parsed,
        author_jid=parsed["author"]["jid"],
        author_name=parsed["author"]["name"],
        item_id="p1",
        now=parsed["updated"],
    )
    assert parse_entry(rebuilt, item_id="p1") == parsed


@pytest.mark.parametrize(
    "markup",
    [
        "<p>a</p><p>b</p>",
        "plain &amp; <b>bold</b>",
        "<div>no namespace</div>",
        "<div xmlns='http://www.w3.org/1999/xhtml'>whole</div>",
        "<h:div xmlns:h='http://www.w3.org/1999/xhtml'><h:p>prefixed</h:p></h:div>",
    ],
)
def test_xhtml_div_accepts(markup: str) -> None:
    """Fragments are wrapped in an XHTML div; a whole div is kept (unprefixed)."""
    text = etree.tostring(xhtml_div(markup), encoding="unicode")
    assert text.startswith('<div xmlns="http://www.w3.org/1999/xhtml">')
    assert text.count("xmlns") == 1


@pytest.mark.parametrize(
    "markup",
    [
        "<p>unclosed",
        "<svg xmlns='http://www.w3.org/2000/svg'/>",
        "<!DOCTYPE d [<!ENTITY e 'x'>]><p>&e;</p>",
        "&undefined;",
        "unescaped & ampersand",
    ],
)
def test_build_refuses_invalid_xhtml(markup: str) -> None:
    """Rich content that is not well-formed XHTML is an AtomError."""
    with pytest.raises(AtomError):
        build_entry(
            {"content_xhtml": markup}, author_jid="a@b", author_name=None, item_id="i", now=0.0
        )


@pytest.mark.parametrize(
    "data",
    [
        {"tags": [1]},
        {"title": 3},
        {"links": [{"rel": "x"}]},
        {"published": "yesterday"},
    ],
)
def test_build_refuses_bad_types(data: dict[str, Any]) -> None:
    """Wrongly typed mb_send data is an AtomError (InvalidInput for the bridge)."""
    with pytest.raises(AtomError):
        build_entry(data, author_jid="a@b", author_name=None, item_id="i", now=0.0)


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    )
    + "]><entry xmlns='http://www.w3.org/2005/Atom'><id>i</id>"
    "<updated>2020-01-01T00:00:00Z</updated><title>&lol9;</title></entry>"
)

XXE = (
    '<!DOCTYPE entry [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    "<entry xmlns='http://www.w3.org/2005/Atom'><id>i</id>"
    "<updated>2020-01-01T00:00:00Z</updated><title>&xxe;</title></entry>"
)


def test_billion_laughs_refused_before_parsing() -> None:
    """Entity expansion is never attempted: the DOCTYPE is refused before any parsing."""
    with pytest.raises(AtomError, match="DOCTYPE"):
        parse_entry(BILLION_LAUGHS)


def test_external_entity_not_read() -> None:
    """An external entity (XXE on /etc/passwd) is refused, the file never read."""
    with pytest.raises(AtomError) as info:
        parse_entry(XXE)
    assert "root:" not in str(info.value)


@pytest.mark.parametrize(
    "xml",
    [
        # DOCTYPE hidden behind another declared encoding (the parser forces UTF-8)
        '<?xml version="1.0" encoding="UTF-7"?>+ADw-!DOCTYPE x+AD4-'
        "<entry xmlns='http://www.w3.org/2005/Atom'/>",
        "<!doctype entry><entry xmlns='http://www.w3.org/2005/Atom'/>",
        # parameter entities
        '<!DOCTYPE e [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>'
        "<entry xmlns='http://www.w3.org/2005/Atom'/>",
    ],
)
def test_other_doctype_tricks_refused(xml: str) -> None:
    """No way around the DOCTYPE refusal."""
    with pytest.raises(AtomError):
        parse_entry(xml, item_id="i")


def test_oversize_refused() -> None:
    """Input above MAX_ENTRY_BYTES is refused before parsing."""
    padding = "x" * MAX_ENTRY_BYTES
    xml = (
        f"<entry xmlns='http://www.w3.org/2005/Atom'><id>i</id>"
        f"<updated>2020-01-01T00:00:00Z</updated><content>{padding}</content></entry>"
    )
    with pytest.raises(AtomError, match="too big"):
        parse_entry(xml)
    with pytest.raises(AtomError, match="too big"):
        build_entry({"content": padding}, author_jid="a@b", author_name=None, item_id="i", now=0)


@pytest.mark.parametrize(
    "xml",
    [
        "<entry xmlns='urn:not-atom'><id>i</id></entry>",
        "<entry><id>i</id></entry>",
        "<feed xmlns='http://www.w3.org/2005/Atom'/>",
    ],
)
def test_non_atom_root_refused(xml: str) -> None:
    """Only an Atom <entry> is an entry."""
    with pytest.raises(AtomError, match="not an Atom entry"):
        parse_entry(xml, item_id="i")


@pytest.mark.parametrize(
    "xml",
    [
        "",
        "not xml",
        "<entry xmlns='http://www.w3.org/2005/Atom'>",
        "<entry xmlns='http://www.w3.org/2005/Atom'></feed>",
        "<entry xmlns='http://www.w3.org/2005/Atom'/><entry/>",
        b"<entry xmlns='http://www.w3.org/2005/Atom'>\xff\xfe</entry>",
        "<entry xmlns='http://www.w3.org/2005/Atom'><title>&nbsp;</title></entry>",
        "<entry xmlns='http://www.w3.org/2005/Atom'><id>i</id><updated>nope</updated></entry>",
        "<entry xmlns='http://www.w3.org/2005/Atom'><id>i</id></entry>",  # no date at all
        "<entry xmlns='http://www.w3.org/2005/Atom'><id>i</id>"
        "<updated>2020-01-01T00:00:00Z</updated><content type='xhtml'>no div</content></entry>",
        "<entry xmlns='http://www.w3.org/2005/Atom'><id>i</id>"
        "<updated>2020-01-01T00:00:00Z</updated><content type='xhtml'>"
        "<div xmlns='http://www.w3.org/1999/xhtml'><x xmlns='urn:evil'/></div></content></entry>",
    ],
)
def test_malformed_refused(xml: str | bytes) -> None:
    """Malformed XML, bad encodings, undefined entities and broken entries: AtomError."""
    with pytest.raises(AtomError):
        parse_entry(xml, item_id="i")


def test_deep_nesting_refused() -> None:
    """libxml2's depth limit applies (huge_tree off): a very deep tree is an AtomError."""
    depth = 20000
    xml = (
        "<entry xmlns='http://www.w3.org/2005/Atom'><content type='xhtml'>"
        "<div xmlns='http://www.w3.org/1999/xhtml'>"
        + "<span>" * depth
        + "</span>" * depth
        + "</div></content></entry>"
    )
    with pytest.raises(AtomError):
        parse_entry(xml, item_id="i")


def test_parser_alone_does_not_expand_entities() -> None:
    """Second line of defence: even past the DOCTYPE refusal, the parser itself neither reads
    external entities nor expands internal ones."""
    from libervia.backend.tools import atom

    root = etree.fromstring(XXE.encode(), atom._parser())
    assert "root:" not in etree.tostring(root, encoding="unicode")
    with pytest.raises(etree.XMLSyntaxError):  # libxml2's amplification limit, not expanded
        etree.fromstring(BILLION_LAUGHS.encode(), atom._parser())


def test_parse_item() -> None:
    """A pubsub <item> (event or pubsub namespace) wrapping an entry: its id is the item's."""
    from libervia.backend.tools.atom import parse_item

    for ns in ("http://jabber.org/protocol/pubsub", "http://jabber.org/protocol/pubsub#event"):
        item = f"<item xmlns='{ns}' id='p1'>{ENTRY}</item>"
        assert parse_item(item) == parse_entry(ENTRY, item_id="p1")
    assert parse_item(ENTRY)["id"] == parse_entry(ENTRY)["atom_id"]
    with pytest.raises(AtomError, match="without an Atom entry"):
        parse_item("<item xmlns='http://jabber.org/protocol/pubsub' id='x'><other/></item>")
    with pytest.raises(AtomError, match="DOCTYPE"):
        parse_item("<!DOCTYPE item><item id='x'/>")


def test_pubsub_uri() -> None:
    """XEP-0060 §12.22 node and item URIs, percent-encoded as XEP-0277 comments links are."""
    from libervia.backend.tools.atom import pubsub_uri

    assert pubsub_uri("pubsub.example.org", "urn:xmpp:microblog:0:comments/a b") == (
        "xmpp:pubsub.example.org?;node=urn%3Axmpp%3Amicroblog%3A0%3Acomments%2Fa%20b"
    )
    assert pubsub_uri("juliet@capulet.lit", "n", "i;1") == (
        "xmpp:juliet@capulet.lit?;node=n;item=i%3B1"
    )
