"""XML helpers over Twisted's ``domish`` (the element type wokkel and our plugins use)."""

from __future__ import annotations

import re

from twisted.words.xish import domish

_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


class XMLParseError(ValueError):
    """The text is not one well-formed XML element."""


def parse(text: str | bytes) -> domish.Element:
    """Parse one XML element from text.

    Raises:
        XMLParseError: the text is not a single well-formed element.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    text = _XML_DECLARATION.sub("", text, count=1)
    # domish's elementStream builds the children of the document's root one by one (stream
    # semantics), so the element is parsed inside a wrapper root and comes out whole.
    elements: list[domish.Element] = []
    stray_text: list[str] = []
    ended: list[bool] = []
    stream = domish.elementStream()
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = elements.append
    stream.DocumentEndEvent = lambda: ended.append(True)
    original_cdata = stream.parser.CharacterDataHandler

    def on_cdata(data: str) -> None:
        if stream.currElem is None:
            stray_text.append(data)
        else:
            original_cdata(data)

    stream.parser.CharacterDataHandler = on_cdata
    try:
        stream.parse(b"<wrapper>" + text.encode("utf-8") + b"</wrapper>")
    except Exception as e:  # domish raises ParserError or expat errors
        raise XMLParseError(f"invalid XML: {e}") from e
    if not ended:
        raise XMLParseError("invalid XML: element is not closed")
    if len(elements) != 1:
        raise XMLParseError(f"invalid XML: expected one element, found {len(elements)}")
    if "".join(stray_text).strip():
        raise XMLParseError("invalid XML: text outside of the element")
    return elements[0]


def serialise(element: domish.Element) -> str:
    """Serialise an element to a string (namespaces declared on the root)."""
    return element.toXml()
