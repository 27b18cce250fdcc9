"""XEP-0059: Result Set Management (wokkel has none).

:class:`RSMRequest` is the paging part of a request (``<set/>`` with ``max``, ``before``,
``after``, ``index``), :class:`RSMResponse` the paging part of an answer (``first`` with its
``index``, ``last``, ``count``). Plugins paging through results (pubsub items, the pubsub
cache) declare a dependency on ``XEP-0059`` and use these two types.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from twisted.words.xish import domish

from libervia.backend.core.exceptions import InvalidInput

PLUGIN_INFO = {
    "name": "Result Set Management",
    "import_name": "XEP-0059",
    "type": "XEP",
    "protocols": ["XEP-0059"],
    "dependencies": [],
    "main": "XEP_0059",
    "handler": False,
    "description": "Paging of result sets (used by pubsub)",
}

NS_RSM = "http://jabber.org/protocol/rsm"
#: longest item id accepted in ``before``/``after`` (ids are node item ids or archive ids)
MAX_ID_LENGTH = 1024


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput(f"rsm {what}: a number expected")
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"rsm {what}: a number expected, not {value!r}") from None
    if number < 0:
        raise InvalidInput(f"rsm {what} must not be negative")
    return number


def _id(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"rsm {what}: a string expected")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidInput(f"rsm {what}: longer than {MAX_ID_LENGTH} characters")
    return value


@dataclass(frozen=True)
class RSMRequest:
    """The paging of a request. ``before=""`` asks for the last page; at most one of
    ``before``, ``after`` and ``index`` is set."""

    max: int | None = None
    before: str | None = None
    after: str | None = None
    index: int | None = None

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.before, self.after, self.index)) > 1:
            raise InvalidInput("rsm: use only one of before, after and index")

    @classmethod
    def from_dict(cls, data: Any) -> RSMRequest:
        """From a bridge dict (``max``, ``before``, ``after``, ``index``).

        Raises:
            InvalidInput: unknown key or bad value.
        """
        if not isinstance(data, dict):
            raise InvalidInput("rsm must be a dict")
        unknown = set(data) - {"max", "before", "after", "index"}
        if unknown:
            raise InvalidInput(f"unknown rsm keys {sorted(unknown)}")
        return cls(
            max=_int(data["max"], "max") if data.get("max") is not None else None,
            before=_id(data["before"], "before") if data.get("before") is not None else None,
            after=_id(data["after"], "after") if data.get("after") is not None else None,
            index=_int(data["index"], "index") if data.get("index") is not None else None,
        )

    def to_element(self) -> domish.Element:
        """The ``<set xmlns='http://jabber.org/protocol/rsm'/>`` element."""
        element = domish.Element((NS_RSM, "set"))
        if self.max is not None:
            element.addElement("max", content=str(self.max))
        if self.after is not None:
            element.addElement("after", content=self.after)
        if self.before is not None:
            element.addElement("before", content=self.before)
        if self.index is not None:
            element.addElement("index", content=str(self.index))
        return element


@dataclass(frozen=True)
class RSMResponse:
    """The paging metadata of an answer (every field may be unknown)."""

    first: str | None = None
    last: str | None = None
    index: int | None = None
    count: int | None = None

    @classmethod
    def from_element(cls, element: domish.Element) -> RSMResponse:
        """Parse a ``<set/>`` of an answer (malformed numbers are ignored)."""
        first = last = None
        index = count = None
        for child in element.elements(NS_RSM):
            text = str(child).strip()
            if child.name == "first":
                first = text or None
                raw_index = child.getAttribute("index")
                if raw_index is not None and raw_index.isascii() and raw_index.isdigit():
                    index = int(raw_index)
            elif child.name == "last":
                last = text or None
            elif child.name == "count" and text.isascii() and text.isdigit():
                count = int(text)
        return cls(first=first, last=last, index=index, count=count)

    @classmethod
    def find(cls, parent: domish.Element) -> RSMResponse | None:
        """The RSM metadata of the ``<set/>`` child of ``parent``, if any."""
        element = next(parent.elements(NS_RSM, "set"), None)
        return None if element is None else cls.from_element(element)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


class XEP_0059:  # noqa: N801 - plugin classes are named after their XEP
    """Nothing per profile: the plugin provides the types above to its dependents."""

    def __init__(self, host: Any) -> None:
        self.host = host
