"""Jingle sessions and contents as typed objects, with the session state machine."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish

from libervia.backend.plugins.plugin_xep_0166.constants import Role, Senders, State
from libervia.backend.plugins.plugin_xep_0166.elements import ReasonElement

if TYPE_CHECKING:
    from libervia.backend.plugins.plugin_xep_0166.base import (
        BaseApplicationHandler,
        BaseTransportHandler,
    )
    from libervia.backend.plugins.plugin_xep_0166.stream import ByteSink, ByteSource

#: the transitions a session may make (XEP-0166 §5)
TRANSITIONS: dict[State, frozenset[State]] = {
    State.PENDING: frozenset({State.ACTIVE, State.ENDED}),
    State.ACTIVE: frozenset({State.ENDED}),
    State.ENDED: frozenset(),
}


class InvalidTransition(RuntimeError):
    """A state change the state machine does not allow (a programming error)."""


@dataclass(eq=False)
class Content:
    """One content of a session: an application, a transport, and its byte endpoints.

    ``creator`` and ``name`` never change (they identify the content in the session).
    """

    creator: Role
    name: str
    application: BaseApplicationHandler
    transport: BaseTransportHandler | None = None
    senders: Senders = Senders.BOTH
    disposition: str = "session"
    #: the description element: ours when we created the content, else the peer's
    description: domish.Element | None = None
    #: accepted by both parties (session-accept or content-accept)
    accepted: bool = False
    #: the application's state for this content
    app_data: Any = None
    #: the current transport's state for this content
    transport_data: Any = None
    #: what the transport reads when we send (set by the application)
    source: ByteSource | None = None
    #: where the transport writes what we receive (set by the application)
    sink: ByteSink | None = None
    #: transports namespaces tried so far (fallback never goes back to one)
    tried_transports: list[str] = field(default_factory=list)
    #: a transport-replace we sent and the peer has not answered yet
    replacing: BaseTransportHandler | None = None
    #: resolved when the peer answers our transport-replace (True: accepted)
    replace_answer: asyncio.Future[bool] | None = None
    #: the session holding the content (set when it is added to one)
    session: Session | None = field(default=None, repr=False)

    @property
    def key(self) -> tuple[Role, str]:
        return (self.creator, self.name)

    def we_send(self, session: Session) -> bool:
        return self.senders.includes(session.role)

    def peer_sends(self, session: Session) -> bool:
        return self.senders.includes(session.role.other)


@dataclass(eq=False)
class Session:
    """A Jingle session with one peer (a full JID), keyed by (peer, sid).

    The state only moves forward: pending -> active -> ended (or pending -> ended);
    :meth:`transition` enforces it.
    """

    sid: str
    peer: JID
    local: JID
    role: Role
    state: State = State.PENDING
    contents: dict[tuple[Role, str], Content] = field(default_factory=dict)
    #: why the session ended (set when it ends)
    reason: ReasonElement | None = None
    #: the pending timer (a session never accepted ends with ``timeout``)
    timer: Any = None
    #: serialises the handling of the peer's requests
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: resolved with the reason when the session ends
    ended: asyncio.Future[ReasonElement] = field(
        default_factory=lambda: asyncio.get_event_loop().create_future()
    )
    #: when the peer's last request about this session arrived (client clock)
    last_heard: float = 0.0
    #: free room for applications (e.g. a pending user action)
    extra: dict[str, Any] = field(default_factory=dict)
    #: our session-level children of <jingle/> for session-initiate / session-accept
    #: (e.g. the XEP-0338 BUNDLE <group/>)
    local_payloads: list[domish.Element] = field(default_factory=list)
    #: the peer's session-level children of its session-initiate / session-accept
    remote_payloads: tuple[domish.Element, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.peer.full(), self.sid)

    @property
    def initiator(self) -> JID:
        return self.local if self.role is Role.INITIATOR else self.peer

    @property
    def responder(self) -> JID:
        return self.peer if self.role is Role.INITIATOR else self.local

    @property
    def is_ended(self) -> bool:
        return self.state is State.ENDED

    def transition(self, new: State) -> None:
        """Move to ``new``.

        Raises:
            InvalidTransition: not allowed from the current state.
        """
        if new not in TRANSITIONS[self.state]:
            raise InvalidTransition(f"session {self.sid}: {self.state} -> {new} not allowed")
        self.state = new

    def content(self, creator: Role, name: str) -> Content | None:
        return self.contents.get((creator, name))

    def add(self, content: Content) -> Content:
        content.session = self
        self.contents[content.key] = content
        return content

    def next_name(self) -> str:
        """The default name of a new content: its index ("0", "1"...), unused so far."""
        index = len(self.contents)
        taken = {name for _, name in self.contents}
        while str(index) in taken:
            index += 1
        return str(index)
