"""Atom entries as XEP-0277 publishes them: hardened parsing to dicts, and building back.

The entry dict (the ``mb_get`` contract) has these keys:

- ``id``: the pubsub item id when the caller gives one (``item_id``), else the ``atom:id``;
- ``atom_id``: the ``atom:id`` text ("" when the entry has none);
- ``title`` (plain text) and ``title_xhtml`` (only when the title is rich);
- ``content`` (plain text, derived from the rich content when there is no text one) and
  ``content_xhtml`` (only when the content is rich: a serialised XHTML ``<div>``);
- ``author``: ``{"name", "jid", "uri"}`` ("" when unknown; ``jid`` comes from an ``xmpp:`` URI);
- ``published`` and ``updated``: float seconds since the epoch (each falls back to the other);
- ``tags``: the ``atom:category`` terms;
- ``links``: ``[{"href", "rel", "type"}]``, every link except the comments ones;
- ``comments``: the ``href`` of the ``rel='replies' title='comments'`` links (node URIs);
- ``language`` (only when the entry has ``xml:lang``).

Parsing is hardened against hostile XML: input above :data:`MAX_ENTRY_BYTES` is refused before
parsing, any DOCTYPE (so any entity declaration: "billion laughs", external entities) is refused,
the parser never loads a DTD, never resolves entities, never touches the network, drops
processing instructions and comments, and keeps libxml2's depth and size limits
(``huge_tree=False``). Every failure is an :class:`AtomError`.

Entries built here carry an ``atom:id`` tag URI (RFC 4151, as in XEP-0277's examples):
``tag:<author bare JID>,<publication date>:posts-<item id>`` (the JID's domain alone when its
local part is not a valid RFC 4151 e-mail local part). Rich content is published twice, as
XEP-0277 asks: a ``type='text'`` element and a ``type='xhtml'`` one.

Rich content is checked to be well-formed XHTML (every element in the XHTML namespace), not
sanitised: frontends that render ``*_xhtml`` must still filter scripts, styles and event
attributes as they would for any remote HTML.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from libervia.backend.tools.lazy import LazyModule

if TYPE_CHECKING:
    from lxml import etree, html
else:
    # lxml (~4.5 MiB, ~10 ms) is imported with the first entry parsed or built, not at start
    etree = LazyModule("lxml.etree")
    html = LazyModule("lxml.html")

NS_ATOM = "http://www.w3.org/2005/Atom"
NS_XHTML = "http://www.w3.org/1999/xhtml"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

#: Largest serialised entry accepted by :func:`parse_entry` (and built by :func:`build_entry`),
#: in bytes of UTF-8: 1 MiB. A microblog post is a few kB; this bounds the memory and time a
#: hostile item can cost before the XML parser even starts.
MAX_ENTRY_BYTES = 1024 * 1024

#: ``rel`` and ``title`` of the link to a post's comments node (XEP-0277 §3.1).
COMMENTS_REL = "replies"
COMMENTS_TITLE = "comments"

_BLOCK_TAGS = frozenset(
    "address article aside blockquote dd div dl dt figcaption figure footer h1 h2 h3 h4 h5 h6 "
    "header hr li main nav ol p pre section table tr ul".split()
)
_DATE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?",
    re.ASCII,
)
_TAG_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9._-]+", re.ASCII)
_FORBIDDEN_MARKUP = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class AtomError(ValueError):
    """The data is not an acceptable Atom entry (hostile, malformed, too big, not Atom)."""


def _parser() -> etree.XMLParser:
    """A new hardened XML parser (lxml parsers are not shareable between threads)."""
    return etree.XMLParser(
        encoding="utf-8",  # ignore the declaration: the pre-parse checks read UTF-8
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        load_dtd=False,
        dtd_validation=False,
        remove_pis=True,
        remove_comments=True,
    )


def _to_bytes(data: str | bytes) -> bytes:
    """UTF-8 bytes of ``data``, within :data:`MAX_ENTRY_BYTES`.

    Raises:
        AtomError: too big, or bytes that are not UTF-8.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_ENTRY_BYTES:
        raise AtomError(f"entry too big: {len(raw)} bytes (limit {MAX_ENTRY_BYTES})")
    return raw


def parse_xml(data: str | bytes) -> etree._Element:
    """Parse one XML element with the hardened parser (see the module docstring).

    Raises:
        AtomError: too big, not UTF-8, has a DOCTYPE, or is not well-formed.
    """
    raw = _to_bytes(data)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise AtomError(f"not UTF-8: {e}") from e
    if _FORBIDDEN_MARKUP.search(text):
        raise AtomError("DOCTYPE and entity declarations are refused")
    try:
        root = etree.fromstring(raw, _parser())
    except etree.XMLSyntaxError as e:
        raise AtomError(f"invalid XML: {e}") from e
    if root is None:
        raise AtomError("invalid XML: no element")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:  # belt and braces
        raise AtomError("DOCTYPE and entity declarations are refused")
    return root


# dates (XEP-0082)


def parse_date(text: str) -> float:
    """Seconds since the epoch of a XEP-0082 date-time.

    Fractions of a second (any number of digits, kept to the microsecond) and ``Z`` or
    ``±hh:mm`` offsets are accepted; a date-time without an offset is taken as UTC.

    Raises:
        AtomError: not a XEP-0082 date-time.
    """
    match = _DATE.fullmatch(text.strip())
    if match is None:
        raise AtomError(f"invalid date: {text!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    tz = UTC
    if offset and offset != "Z":
        sign = -1 if offset[0] == "-" else 1
        delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))
        if delta >= timedelta(hours=24):
            raise AtomError(f"invalid date offset: {text!r}")
        tz = timezone(sign * delta)
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz
        )
    except ValueError as e:
        raise AtomError(f"invalid date: {text!r}: {e}") from e
    return moment.timestamp()


def format_date(timestamp: float) -> str:
    """The XEP-0082 date-time (UTC, ``Z``) of seconds since the epoch.

    Microseconds are written only when there are some, so whole seconds stay short.
    """
    moment = datetime.fromtimestamp(timestamp, UTC)
    fraction = f".{moment.microsecond:06d}" if moment.microsecond else ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


# XHTML


def serialise_element(element: etree._Element) -> str:
    """An element serialised alone: only the namespace declarations it uses."""
    element = copy.deepcopy(element)
    element.tail = None
    etree.cleanup_namespaces(element)
    return etree.tostring(element, encoding="unicode")


def xhtml_to_text(element: etree._Element) -> str:
    """Plain text of an XHTML tree: block elements on their own lines, ``<br/>`` breaks."""
    parts: list[str] = []
    _collect_text(element, parts)
    text = re.sub(r"[ \t]*\n[ \t]*", "\n", "".join(parts))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _collect_text(element: etree._Element, parts: list[str]) -> None:
    """Append the text of ``element`` (not its tail) to ``parts``."""
    local = etree.QName(element).localname
    if local == "br":
        parts.append("\n")
        return
    if local in ("script", "style"):
        return
    block = local in _BLOCK_TAGS
    if block:
        parts.append("\n")
    if element.text:
        parts.append(element.text)
    for child in element:
        if not isinstance(child.tag, str):  # comments and PIs (removed anyway)
            continue
        _collect_text(child, parts)
        if child.tail:
            parts.append(child.tail)
    if block:
        parts.append("\n")


def _check_xhtml(div: etree._Element) -> etree._Element:
    """A canonical copy of ``div``, an XHTML ``<div>`` whose elements are all XHTML.

    The copy declares XHTML as the default namespace (no prefixes), so the same content always
    serialises the same way.

    Raises:
        AtomError: another element or a foreign namespace.
    """
    if div.tag != f"{{{NS_XHTML}}}div":
        raise AtomError(f"rich content must be an XHTML div, not {div.tag!r}")
    for element in div.iter():
        if isinstance(element.tag, str) and etree.QName(element).namespace != NS_XHTML:
            raise AtomError(f"foreign element in XHTML content: {element.tag!r}")
    canonical = etree.Element(div.tag, dict(div.attrib), nsmap={None: NS_XHTML})
    _copy_children(div, canonical)
    return canonical


def _copy_children(source: etree._Element, target: etree._Element) -> None:
    """Copy the text and the element children of ``source`` under ``target``."""
    target.text = source.text
    for child in source:
        if not isinstance(child.tag, str):  # comments and PIs (removed by the parser anyway)
            continue
        copied = etree.SubElement(target, child.tag, dict(child.attrib))
        _copy_children(child, copied)
        copied.tail = child.tail


def xhtml_div(markup: str) -> etree._Element:
    """The XHTML ``<div>`` of rich content given as markup.

    ``markup`` may be a whole ``<div xmlns='http://www.w3.org/1999/xhtml'>``, or a fragment
    (text and elements without namespace or in the XHTML one), which is wrapped in such a div.
    It is parsed with the hardened parser.

    Raises:
        AtomError: not well-formed, hostile, or with non-XHTML elements.
    """
    stripped = markup.strip()
    if stripped.startswith("<"):
        try:
            root = parse_xml(stripped)
        except AtomError:
            root = None
        if root is not None and root.tag == f"{{{NS_XHTML}}}div":
            return _check_xhtml(root)
    return _check_xhtml(parse_xml(f'<div xmlns="{NS_XHTML}">{markup}</div>'))


def _html_to_xhtml(markup: str) -> etree._Element | None:
    """The XHTML ``<div>`` of an HTML fragment (Atom ``type='html'``), None if unusable."""
    if not markup.strip():
        return None
    parser = html.HTMLParser(
        no_network=True, remove_comments=True, remove_pis=True, huge_tree=False
    )
    try:
        div = html.fragment_fromstring(markup, create_parent="div", parser=parser)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError):
        return None
    html.html_to_xhtml(div)
    try:  # the HTML parser accepts names XML refuses: keep only what is valid XHTML
        return xhtml_div(etree.tostring(div, encoding="unicode"))
    except (AtomError, ValueError):
        return None


# parsing


def _text_construct(element: etree._Element | None) -> tuple[str, str | None]:
    """(plain text, serialised XHTML div or None) of an Atom text construct.

    Raises:
        AtomError: ``type='xhtml'`` without an XHTML ``<div>`` child.
    """
    if element is None:
        return "", None
    kind = element.get("type", "text")
    if kind == "xhtml":
        div = element.find(f"{{{NS_XHTML}}}div")
        if div is None:
            raise AtomError("xhtml text construct without an XHTML div")
        div = _check_xhtml(div)
        return xhtml_to_text(div), serialise_element(div)
    text = element.text or ""
    if kind == "html":
        div = _html_to_xhtml(text)
        if div is None:
            return "", None
        return xhtml_to_text(div), serialise_element(div)
    return text, None


def _rich_field(entry: etree._Element, tag: str, name: str, out: dict[str, Any]) -> None:
    """Fill ``out[name]`` (text) and ``out[name + '_xhtml']`` (rich) from ``<tag>`` children.

    A ``type='text'`` element is the text; without one the text is derived from the rich one.
    """
    elements = entry.findall(f"{{{NS_ATOM}}}{tag}")
    plain = next((e for e in elements if e.get("type", "text") == "text"), None)
    rich = next((e for e in elements if e.get("type") in ("xhtml", "html")), None)
    derived, xhtml = _text_construct(rich)
    out[name] = _text_construct(plain)[0] if plain is not None else derived
    if xhtml is not None:
        out[f"{name}_xhtml"] = xhtml


def _jid_of_uri(uri: str) -> str:
    """The JID of an ``xmpp:`` URI (RFC 5122), "" for any other URI."""
    if not uri.startswith("xmpp:"):
        return ""
    return unquote(uri[5:].split("?", 1)[0].split("#", 1)[0]).lstrip("/")


def _author(entry: etree._Element) -> dict[str, str]:
    """``{"name", "jid", "uri"}`` of the first ``atom:author``."""
    author = entry.find(f"{{{NS_ATOM}}}author")
    if author is None:
        return {"name": "", "jid": "", "uri": ""}
    name = (author.findtext(f"{{{NS_ATOM}}}name") or "").strip()
    uri = (author.findtext(f"{{{NS_ATOM}}}uri") or "").strip()
    return {"name": name, "jid": _jid_of_uri(uri), "uri": uri}


def _dates(entry: etree._Element) -> tuple[float, float]:
    """(published, updated); each missing one falls back to the other.

    Raises:
        AtomError: an invalid date, or neither date.
    """
    published_text = entry.findtext(f"{{{NS_ATOM}}}published")
    updated_text = entry.findtext(f"{{{NS_ATOM}}}updated")
    published = parse_date(published_text) if published_text is not None else None
    updated = parse_date(updated_text) if updated_text is not None else None
    if published is None:
        if updated is None:
            raise AtomError("entry without published nor updated date")
        return updated, updated
    return published, published if updated is None else updated


def _links(entry: etree._Element) -> tuple[list[dict[str, str]], list[str]]:
    """(links other than comments, comments node URIs)."""
    links: list[dict[str, str]] = []
    comments: list[str] = []
    for link in entry.iterfind(f"{{{NS_ATOM}}}link"):
        href = link.get("href")
        if not href:
            continue
        rel = link.get("rel", "alternate")
        if rel == COMMENTS_REL and link.get("title") == COMMENTS_TITLE:
            comments.append(href)
        else:
            links.append({"href": href, "rel": rel, "type": link.get("type", "")})
    return links, comments


def parse_entry(xml: str | bytes, item_id: str | None = None) -> dict[str, Any]:
    """The entry dict (see the module docstring) of an Atom ``<entry>``.

    Args:
        xml: the entry, as published in a XEP-0277 pubsub item.
        item_id: the pubsub item id: it becomes ``id`` (the ``atom:id`` stays in ``atom_id``).

    Raises:
        AtomError: hostile or malformed XML, not an Atom entry, no id at all, bad dates.
    """
    return entry_to_dict(parse_xml(xml), item_id)


def parse_item(xml: str | bytes) -> dict[str, Any]:
    """The entry dict of a pubsub ``<item id='...'>`` (any namespace) holding an Atom entry.

    A bare Atom ``<entry>`` is accepted too (then its ``atom:id`` is the ``id``).

    Raises:
        AtomError: as :func:`parse_entry`, or an item without an Atom entry.
    """
    root = parse_xml(xml)
    if etree.QName(root).localname != "item":
        return entry_to_dict(root, None)
    entry = root.find(f"{{{NS_ATOM}}}entry")
    if entry is None:
        raise AtomError("pubsub item without an Atom entry")
    return entry_to_dict(entry, root.get("id") or None)


def entry_to_dict(entry: etree._Element, item_id: str | None = None) -> dict[str, Any]:
    """The entry dict of an ``<entry>`` element already parsed by :func:`parse_xml`.

    Raises:
        AtomError: as :func:`parse_entry`.
    """
    if entry.tag != f"{{{NS_ATOM}}}entry":
        raise AtomError(f"not an Atom entry: {entry.tag!r}")
    atom_id = (entry.findtext(f"{{{NS_ATOM}}}id") or "").strip()
    if not (item_id or atom_id):
        raise AtomError("entry without id (and no item id)")
    data: dict[str, Any] = {"id": item_id or atom_id, "atom_id": atom_id}
    _rich_field(entry, "title", "title", data)
    _rich_field(entry, "content", "content", data)
    data["author"] = _author(entry)
    data["published"], data["updated"] = _dates(entry)
    data["tags"] = [
        term for c in entry.iterfind(f"{{{NS_ATOM}}}category") if (term := c.get("term"))
    ]
    data["links"], data["comments"] = _links(entry)
    language = entry.get(XML_LANG)
    if language:
        data["language"] = language
    return data


def pubsub_uri(service: str, node: str, item_id: str | None = None) -> str:
    """The ``xmpp:`` URI (RFC 5122, XEP-0060 §12.22) of a node, or of one of its items.

    This is the form of XEP-0277 comments links:
    ``xmpp:pubsub.example.org?;node=urn%3Axmpp%3Amicroblog%3A0%3Acomments%2F<id>``.
    """
    uri = f"xmpp:{quote(service, safe='@/')}?;node={quote(node, safe='')}"
    if item_id is not None:
        uri += f";item={quote(item_id, safe='')}"
    return uri


# building


def tag_uri(author_jid: str, item_id: str, now: float) -> str:
    """The RFC 4151 tag URI used as ``atom:id`` (see the module docstring)."""
    bare = author_jid.split("/", 1)[0]
    local, _, domain = bare.rpartition("@")
    authority = bare if local and _TAG_EMAIL_LOCAL.fullmatch(local) else domain
    day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
    return f"tag:{authority},{day}:posts-{quote(item_id, safe='')}"


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> Any:
    """A new Atom child of ``parent``."""
    element = etree.SubElement(parent, f"{{{NS_ATOM}}}{tag}", attrs)
    if text is not None:
        element.text = text
    return element


def _add_rich(entry: etree._Element, tag: str, text: str | None, xhtml: str | None) -> None:
    """Add ``<tag type='text'>`` and/or ``<tag type='xhtml'>`` (XEP-0277 asks for both).

    The text of rich content without a given text is derived from the XHTML.
    """
    div = xhtml_div(xhtml) if xhtml else None
    if text is None and div is not None:
        text = xhtml_to_text(div)
    if text is not None:
        _sub(entry, tag, text, type="text")
    if div is not None:
        _sub(entry, tag, type="xhtml").append(div)


def _str_list(value: Any, key: str) -> list[str]:
    """``value`` as a list of strings (a single string is a list of one).

    Raises:
        AtomError: anything else.
    """
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable) and all(isinstance(v, str) for v in value):
        return list(value)
    raise AtomError(f"{key!r} must be a string or a list of strings")


def _link_dicts(data: Mapping[str, Any]) -> list[dict[str, str]]:
    """The links of ``data``: ``links`` (list of dicts) then ``link`` (href or dict).

    Raises:
        AtomError: a link without an href.
    """
    links = list(data.get("links") or [])
    link = data.get("link")
    if link:
        links.append({"href": link, "rel": "alternate"} if isinstance(link, str) else link)
    result = []
    for item in links:
        if not isinstance(item, Mapping) or not item.get("href"):
            raise AtomError(f"invalid link: {item!r}")
        rel = item.get("rel") or "alternate"
        result.append({"href": str(item["href"]), "rel": str(rel), "type": item.get("type") or ""})
    return result


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    """``data[key]`` when it is a non-empty string, None when absent or empty.

    Raises:
        AtomError: neither a string nor None.
    """
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise AtomError(f"{key!r} must be a string")
    return value


def build_entry(
    data: Mapping[str, Any],
    *,
    author_jid: str,
    author_name: str | None,
    item_id: str,
    now: float,
) -> str:
    """The Atom ``<entry>`` XML of ``mb_send`` data; :func:`parse_entry` gives it back.

    Args:
        data: ``title``, ``title_xhtml``, ``content``, ``content_xhtml`` (markup: a whole XHTML
            div or a fragment), ``tags``, ``language``, ``comments`` (node URI or list of
            them: already resolved, ``true`` is the plugin's business), ``links`` (dicts
            ``href``/``rel``/``type``) and ``link`` (an href, or such a dict). Editing an
            entry: ``atom_id`` and ``published``, when given, are kept.
        author_jid: the publisher's JID (``atom:author/uri`` is its ``xmpp:`` URI).
        author_name: the author's display name (the bare JID when None).
        item_id: the pubsub item id (part of the ``atom:id`` tag URI).
        now: the publication time (``updated``, and ``published`` for a new entry).

    Raises:
        AtomError: invalid values (non-XHTML rich content, wrong types, too big).
    """
    entry = etree.Element(f"{{{NS_ATOM}}}entry", nsmap={None: NS_ATOM})
    language = _optional_str(data, "language")
    if language:
        entry.set(XML_LANG, language)
    _add_rich(entry, "title", _optional_str(data, "title"), _optional_str(data, "title_xhtml"))
    _add_rich(
        entry, "content", _optional_str(data, "content"), _optional_str(data, "content_xhtml")
    )
    bare = author_jid.split("/", 1)[0]
    author = _sub(entry, "author")
    _sub(author, "name", author_name or bare)
    _sub(author, "uri", f"xmpp:{bare}")
    _sub(entry, "id", _optional_str(data, "atom_id") or tag_uri(bare, item_id, now))
    published = data.get("published")
    if published is not None and (
        isinstance(published, bool) or not isinstance(published, int | float)
    ):
        raise AtomError("'published' must be a number of seconds since the epoch")
    _sub(entry, "published", format_date(now if published is None else float(published)))
    _sub(entry, "updated", format_date(now))
    for tag in _str_list(data.get("tags"), "tags"):
        _sub(entry, "category", term=tag)
    for link in _link_dicts(data):
        attrs = {k: v for k, v in link.items() if v}
        _sub(entry, "link", **attrs)
    for uri in _str_list(data.get("comments"), "comments"):
        _sub(entry, "link", rel=COMMENTS_REL, title=COMMENTS_TITLE, href=uri)
    xml = etree.tostring(entry, encoding="unicode")
    _to_bytes(xml)  # what we publish must be readable by parse_entry
    return xml
