"""Parsing and building of ``<jingle/>`` elements (pure: no session, no stream)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from twisted.words.xish import domish

from libervia.backend.plugins.plugin_xep_0166.constants import (
    NS_JINGLE,
    Action,
    Reason,
    Role,
    Senders,
)
from libervia.backend.plugins.plugin_xep_0166.errors import bad_request
from libervia.backend.tools import xml as xml_tools

#: longest sid or content name we accept from a peer
MAX_ID_LENGTH = 256
#: most contents we accept in one request
MAX_CONTENTS = 64


@dataclass(frozen=True)
class ContentElement:
    """One ``<content/>`` of a request, as received (or to send)."""

    creator: Role
    name: str
    senders: Senders = Senders.BOTH
    disposition: str = "session"
    description: domish.Element | None = None
    transport: domish.Element | None = None
    security: domish.Element | None = None
    #: the ``name`` attribute was missing: ``name`` is the content's index
    name_defaulted: bool = False


@dataclass(frozen=True)
class ReasonElement:
    """A ``<reason/>``: one condition, an optional text and application element."""

    condition: Reason
    text: str | None = None
    extra: domish.Element | None = None


@dataclass(frozen=True)
class JingleRequest:
    """A parsed ``<jingle/>`` element."""

    action: Action
    sid: str
    initiator: str | None = None
    responder: str | None = None
    contents: tuple[ContentElement, ...] = ()
    reason: ReasonElement | None = None
    #: children in other namespaces (session-info payloads...)
    payloads: tuple[domish.Element, ...] = field(default_factory=tuple)


def clone(element: domish.Element) -> domish.Element:
    """A deep copy of an element (``copy.copy`` does not work on domish elements)."""
    return xml_tools.parse(element.toXml())


def _enum(enum: type, value: str | None, default: object, what: str) -> object:
    if value is None:
        return default
    try:
        return enum(value)
    except ValueError:
        raise bad_request(f"invalid {what} {value[:40]!r}") from None


def parse_content(element: domish.Element, index: int) -> ContentElement:
    """Parse a ``<content/>``; a missing name defaults to the content's index ("0", "1"...).

    Raises:
        JingleError: bad-request for invalid attribute values.
    """
    name = element.getAttribute("name")
    defaulted = name is None or name == ""
    if defaulted:
        name = str(index)
    elif len(name) > MAX_ID_LENGTH:
        raise bad_request("content name too long")
    creator = _enum(Role, element.getAttribute("creator"), Role.INITIATOR, "creator")
    senders = _enum(Senders, element.getAttribute("senders"), Senders.BOTH, "senders")
    children: dict[str, domish.Element] = {}
    for child in element.elements():
        if child.name in ("description", "transport", "security"):
            if child.name in children:
                raise bad_request(f"content {name!r} has several {child.name} elements")
            children[child.name] = child
    return ContentElement(
        creator=creator,  # type: ignore[arg-type]
        name=name,
        senders=senders,  # type: ignore[arg-type]
        disposition=element.getAttribute("disposition") or "session",
        description=children.get("description"),
        transport=children.get("transport"),
        security=children.get("security"),
        name_defaulted=defaulted,
    )


def parse_reason(element: domish.Element) -> ReasonElement:
    """Parse a ``<reason/>``; an unknown condition is read as ``general-error``."""
    condition: Reason | None = None
    text = None
    extra = None
    for child in element.elements():
        if child.uri == NS_JINGLE and child.name == "text":
            text = str(child)
        elif child.uri == NS_JINGLE and condition is None:
            try:
                condition = Reason(child.name)
            except ValueError:
                condition = Reason.GENERAL_ERROR
        elif child.uri != NS_JINGLE and extra is None:
            extra = child
    return ReasonElement(condition or Reason.GENERAL_ERROR, text, extra)


def parse_jingle(element: domish.Element) -> JingleRequest:
    """Parse a ``<jingle xmlns='urn:xmpp:jingle:1'/>``.

    Raises:
        JingleError: bad-request for an unknown action, a missing sid, malformed contents.
    """
    action_value = element.getAttribute("action")
    if not action_value:
        raise bad_request("missing action")
    try:
        action = Action(action_value)
    except ValueError:
        raise bad_request(f"unknown action {action_value[:40]!r}") from None
    sid = element.getAttribute("sid")
    if not sid:
        raise bad_request("missing sid")
    if len(sid) > MAX_ID_LENGTH:
        raise bad_request("sid too long")
    contents: list[ContentElement] = []
    reason = None
    payloads: list[domish.Element] = []
    for child in element.elements():
        if child.uri == NS_JINGLE and child.name == "content":
            if len(contents) >= MAX_CONTENTS:
                raise bad_request("too many contents")
            contents.append(parse_content(child, len(contents)))
        elif child.uri == NS_JINGLE and child.name == "reason":
            reason = parse_reason(child)
        elif child.uri != NS_JINGLE:
            payloads.append(child)
    keys = [(c.creator, c.name) for c in contents]
    if len(set(keys)) != len(keys) and action is not Action.SESSION_INITIATE:
        raise bad_request("duplicate content")
    return JingleRequest(
        action=action,
        sid=sid,
        initiator=element.getAttribute("initiator"),
        responder=element.getAttribute("responder"),
        contents=tuple(contents),
        reason=reason,
        payloads=tuple(payloads),
    )


def build_reason(
    condition: Reason, text: str | None = None, extra: domish.Element | None = None
) -> domish.Element:
    """A ``<reason/>`` element."""
    reason = domish.Element((NS_JINGLE, "reason"))
    reason.addElement(condition.value)
    if text:
        reason.addElement("text", content=text)
    if extra is not None:
        reason.addChild(extra)
    return reason


def build_content(content: ContentElement) -> domish.Element:
    """A ``<content/>`` element (``senders`` written only when not the default)."""
    element = domish.Element((NS_JINGLE, "content"))
    element["creator"] = content.creator.value
    element["name"] = content.name
    if content.senders is not Senders.BOTH:
        element["senders"] = content.senders.value
    if content.disposition != "session":
        element["disposition"] = content.disposition
    for child in (content.description, content.transport, content.security):
        if child is not None:
            element.addChild(child)
    return element


def build_jingle(
    action: Action,
    sid: str,
    *,
    initiator: str | None = None,
    responder: str | None = None,
    contents: Iterable[ContentElement] = (),
    reason: domish.Element | None = None,
    payloads: Iterable[domish.Element] = (),
) -> domish.Element:
    """A ``<jingle/>`` element."""
    jingle = domish.Element((NS_JINGLE, "jingle"))
    jingle["action"] = action.value
    if initiator is not None:
        jingle["initiator"] = initiator
    if responder is not None:
        jingle["responder"] = responder
    jingle["sid"] = sid
    for content in contents:
        jingle.addChild(build_content(content))
    if reason is not None:
        jingle.addChild(reason)
    for payload in payloads:
        jingle.addChild(payload)
    return jingle
