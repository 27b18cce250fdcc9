"""tools.xml: parse one element, serialise it back."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.words.xish import domish

from libervia.backend.tools.xml import XMLParseError, parse, serialise


def test_parse_keeps_everything() -> None:
    """Attributes, nested namespaces, mixed text and entities survive a round trip."""
    text = (
        '<?xml version="1.0"?><item id="1">a<entry xmlns="http://www.w3.org/2005/Atom">'
        "<title>été &amp; &lt;tag&gt;</title></entry>b<x/></item>"
    )
    element = parse(text)
    assert element.name == "item" and element["id"] == "1"
    entry = next(element.elements("http://www.w3.org/2005/Atom", "entry"))
    assert str(entry.title) == "été & <tag>"
    assert serialise(element) == (
        "<item id='1'>a<entry xmlns='http://www.w3.org/2005/Atom'>"
        "<title>été &amp; &lt;tag&gt;</title></entry>b<x/></item>"
    )
    assert serialise(parse(serialise(element))) == serialise(element)


def test_parse_bytes() -> None:
    """UTF-8 bytes are accepted."""
    assert str(parse("<a>é</a>".encode())) == "é"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "text only",
        "<a>",
        "<a></b>",
        "<a/><b/>",
        "<a/>trailing",
        "</wrapper><a/><wrapper>",
        "<!DOCTYPE a><a/>",
        "<a xmlns:p='u'><p:b></a>",
    ],
)
def test_invalid_xml(text: str) -> None:
    """Anything but exactly one well-formed element is an XMLParseError."""
    with pytest.raises(XMLParseError):
        parse(text)


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"])))
def test_any_text_content_roundtrips(content: str) -> None:
    """Any text content comes back identical after serialise/parse."""
    element = domish.Element((None, "a"))
    element.addContent(content)
    assert str(parse(serialise(element))) == content
