"""XEP-0353: Jingle Message Initiation (``urn:xmpp:jingle-message:0``, version 0.8.0).

Before a Jingle session, the initiator sends a ``<propose/>`` (carrying the descriptions of
the future contents, e.g. a XEP-0234 file offer) in a ``<message type='chat'>`` to the
responder's **bare** JID, so that every device of the responder sees it. Each device that
asks its user answers ``<ringing/>``; the device where the user accepts answers
``<proceed/>`` (or ``<reject/>``); the initiator then sends the Jingle session-initiate to
the full JID that proceeded, with the propose's id as sid. ``<retract/>`` withdraws a
proposal, ``<finish/>`` is sent by both parties once the Jingle session ended. Every message
carries ``<store xmlns='urn:xmpp:hints'/>``; its stanza id is ``jm-<element>-<sid>`` (as
Conversations does), so that an error bounce of a propose can be matched.

Addressing (fact sheet §2): propose and retract to the peer's bare JID; ringing, proceed,
reject and finish to the peer's full JID. Responses sent by older implementations to our bare
JID (0.6.0) are accepted the same way: only the sender's bare JID and the id are checked.
A peer that does not receive our presence gets it directed to it (with our capabilities)
along with our propose, or with our proceed (XEP-0353 §"Indicating Intent", §"Accepting").

Initiator (the API a Jingle application uses)::

    jmi = host.plugins["XEP-0353"]
    sid = await jmi.propose(client, peer_bare, [description], on_ringing=callback)
    responder = await jmi.wait_proceed(client, peer_bare, sid)  # the full JID that proceeded
    session = jingle.create_session(client, responder, sid)
    ...                                                          # add the contents
    jmi.track(client, session)          # <finish/> is sent when the Jingle session ends
    await jingle.initiate(client, session)

``on_ringing`` (optional) is called with the full JID of each device of the peer that says
it rings (once per device, while nobody proceeded): calls surface it to the frontend.
``wait_proceed`` raises :class:`ProposalEnded` (rejected, retracted by us, lost a tie-break),
:class:`~libervia.backend.core.exceptions.OperationTimeout` (no answer within
``jingle_message_timeout`` seconds: a ``<retract/>`` with ``<timeout/>`` was sent),
:class:`~libervia.backend.core.exceptions.XMPPError` (the propose bounced: no device of the
peer can be reached) or ``NotConnected``.

Responder: a propose whose descriptions are all of registered Jingle applications (others
are ignored without answer: another device of ours may handle them) becomes a user action
(``host.actions.new``, data in :meth:`XEP_0353.action_data`). Only senders in our roster get a
``<ringing/>`` at once: answering anybody else automatically would leak our presence
(XEP-0353 §Security); they still get the question. The user's answer
(``{"accept": true, "path": ..., "overwrite": ...}`` like a XEP-0234 offer) sends
``<proceed/>`` (or ``<reject/>`` with ``<busy/>``). Without carbons, a copy (legacy
``<accept/>`` / ``<reject/>``) also goes to our own bare JID so that our other devices stop
asking.

**Pre-accepted sessions** (the hook for the Jingle application): when the user accepted
during the proposal, the following session-initiate from the same full JID with the same sid
must not ask again. The application calls :meth:`XEP_0353.take_accepted` from its
``on_session_initiate``: it returns a :class:`PreAccepted` (the user's answer, and the
``progress_id`` announced in the action, which the transfer must use so that the frontend
following it finds it) when the session's contents are those proposed, else None (then ask
as usual). It also arranges for ``<finish/>`` when the session ends. If no session-initiate
comes within ``jingle_message_timeout`` seconds after our proceed, the announced progress
fails and a ``<finish/>`` with ``<expired/>`` is sent. Whenever an accepted proposal ends
without its session (that timeout, a ``<retract/>`` or ``<finish/>`` from the proposer,
the profile disconnecting), the application registered with
:meth:`XEP_0353.on_accepted_unstarted` for its descriptions is told (calls: ``call_ended``).

Multi-device: carbons (XEP-0280) of a ``<proceed/>``/``<accept/>``/``<reject/>`` sent by
another device of our account cancel the pending action here ("accepted on another device" /
"declined on another device", through ``Action.cancel``: ``action_update``). Only carbons
whose wrapper comes from our own bare JID count; carbons of our own stanzas are ignored. A
``<retract/>`` (or a ``<finish/>``) from the proposer cancels the action ("cancelled by the
sender").

Tie-breaking (both sides proposed to each other, nobody answered): the lower id (bytewise,
"i;octet") wins; equal ids: the proposal of the lower JID wins. Receiving the winning
(lower) id, we retract ours (``<expired/>`` + ``<tie-break/>``) and handle theirs normally;
receiving the losing one, we reject it with ``<expired/>`` + ``<tie-break/>``.

Not implemented: the "existing session" migration (a new propose from a peer with whom a
session is active finishing the old one with ``<migrated/>``): for file transfers several
sessions with one peer are legitimate, so a new propose is simply a new proposal. Proposals
caught up from the archive (MAM) are not acted upon. Proposals from our own other devices
(to our own bare JID) are ignored.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from twisted.words.protocols.jabber.jid import JID, InvalidFormat
from twisted.words.xish import domish

from libervia.backend.core.aio import background
from libervia.backend.core.exceptions import (
    ActionCancelled,
    ErrorCode,
    InvalidInput,
    LiberviaError,
    NotConnected,
    NotFound,
    OperationTimeout,
    XMPPError,
)
from libervia.backend.core.log import get_logger
from libervia.backend.plugins.plugin_xep_0166 import Reason, Role, Session
from libervia.backend.plugins.plugin_xep_0166.elements import (
    ReasonElement,
    build_reason,
    clone,
    parse_reason,
)
from libervia.backend.tools.ids import time_ordered_uuid
from libervia.backend.tools.jid import parse_jid

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "Jingle Message Initiation",
    "import_name": "XEP-0353",
    "type": "XEP",
    "protocols": ["XEP-0353"],
    "dependencies": ["XEP-0166"],
    "recommendations": ["XEP-0280"],
    "main": "XEP_0353",
    "handler": False,
    "description": "Propose Jingle sessions by message, to every device of the peer",
}

NS_JMI = "urn:xmpp:jingle-message:0"
NS_HINTS = "urn:xmpp:hints"
NS_FORWARD = "urn:xmpp:forward:0"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_FT = "urn:xmpp:jingle:apps:file-transfer:5"
NS_RTP = "urn:xmpp:jingle:apps:rtp:1"
NS_HASHES = "urn:xmpp:hashes:2"
#: client.extra key of XEP-0280: True when carbons are enabled for the session
CARBONS_ENABLED_KEY = "XEP-0280_enabled"

#: seconds the initiator waits for an answer; the responder waits for the session-initiate
#: after its proceed (``jingle_message_timeout`` option)
TIMEOUT = 300.0
#: seconds an unanswered incoming proposal stays asked (``jingle_message_expiry`` option):
#: the initiator normally retracts it long before
EXPIRY = 3600.0
#: before XEP-0359 (100) and XEP-0203 (90), after the carbons unwrapping (900)
TRIGGER_PRIORITY = 500
MAX_ID_LENGTH = 256
MAX_DESCRIPTIONS = 16
#: pending incoming proposals kept per peer (bare JID) and in all (others are ignored)
MAX_PENDING_PER_PEER = 4
MAX_PENDING = 64
#: ids of the proposals we handled (a re-delivered propose is not asked again)
SEEN_SIZE = 512
MAX_TEXT = 1000

#: ``Action.cancel`` reasons (``action_update``), part of the frontends' contract
REASON_ACCEPTED_ELSEWHERE = "accepted on another device"
REASON_DECLINED_ELSEWHERE = "declined on another device"
REASON_RETRACTED = "cancelled by the sender"
REASON_EXPIRED = "expired"

STATE_KEY = "XEP-0353"
SESSION_TRACKED_KEY = "XEP-0353_tracked"


class Element(StrEnum):
    """The JMI elements."""

    PROPOSE = "propose"
    RINGING = "ringing"
    PROCEED = "proceed"
    REJECT = "reject"
    RETRACT = "retract"
    FINISH = "finish"
    #: legacy: "accepted", sent by the accepting device to its own bare JID
    ACCEPT = "accept"


ELEMENT_NAMES = frozenset(e.value for e in Element)


class ProposalState(StrEnum):
    PROPOSED = "proposed"
    #: accepted (by the peer, or by our user): the Jingle session follows
    PROCEEDED = "proceeded"
    REJECTED = "rejected"
    RETRACTED = "retracted"
    #: handled by another device of our account
    ELSEWHERE = "elsewhere"
    EXPIRED = "expired"
    #: the Jingle session started (responder: the pre-accepted record was taken)
    STARTED = "started"


class ProposalEnded(LiberviaError):
    """A proposal of ours ended without ``<proceed/>``.

    Attributes:
        state: rejected (by the peer), retracted (by us: tie-break lost, cancelled).
        condition: the ``<reason/>`` condition of the peer's reject, if any.
        tie_break: the proposal was withdrawn by tie-breaking.
    """

    code = ErrorCode.CANCELLED

    def __init__(
        self,
        message: str,
        state: ProposalState,
        condition: Reason | None = None,
        tie_break: bool = False,
    ) -> None:
        super().__init__(message)
        self.state = state
        self.condition = condition
        self.tie_break = tie_break


@dataclass(frozen=True)
class PreAccepted:
    """What the user answered during the proposal (see :meth:`XEP_0353.take_accepted`)."""

    #: the answer given to the action (``{"accept": True, "path": ..., "overwrite": ...}``)
    answer: dict[str, Any]
    #: the progress id announced in the action (files): the transfer must use it
    progress_id: str | None
    #: the id of the (answered) action
    action_id: str


@dataclass(eq=False)
class Proposal:
    """One JMI proposal, ours (``role`` initiator) or a peer's (responder)."""

    sid: str
    #: initiator: the bare JID we proposed to; responder: the proposer's full JID
    peer: JID
    role: Role
    descriptions: tuple[domish.Element, ...]
    state: ProposalState = ProposalState.PROPOSED
    timer: Any = None
    # --- ours ---
    #: resolved with the full JID that proceeded (or failed: see :class:`ProposalEnded`)
    proceeded: asyncio.Future[JID] = field(
        default_factory=lambda: asyncio.get_event_loop().create_future()
    )
    #: full JIDs of the peer's devices that said they ring
    ringing: set[str] = field(default_factory=set)
    #: called with each new ringing device (see :meth:`XEP_0353.propose`)
    on_ringing: Callable[[JID], None] | None = None
    #: seconds it waits for an answer before being retracted
    timeout: float = TIMEOUT
    # --- the peer's ---
    action: Any = None
    in_roster: bool = False
    progress_id: str | None = None
    #: the user's answer once accepted
    answer: dict[str, Any] | None = None
    #: another device of ours also proceeded
    elsewhere: bool = False

    @property
    def key(self) -> tuple[Role, str, str]:
        return (self.role, self.peer.userhost(), self.sid)


@dataclass
class ClientState:
    """The proposals of one profile."""

    proposals: dict[tuple[Role, str, str], Proposal] = field(default_factory=dict)
    #: (peer bare JID, sid) of the peers' proposals already handled
    seen: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=SEEN_SIZE))


# --- elements ---------------------------------------------------------------------------------


def build_message(
    to: JID,
    element: Element,
    sid: str,
    children: Iterable[domish.Element] = (),
) -> domish.Element:
    """A JMI ``<message type='chat'>`` (with the ``<store/>`` hint)."""
    message = domish.Element((None, "message"))
    message["to"] = to.full()
    message["type"] = "chat"
    message["id"] = f"jm-{element.value}-{sid}"
    child = message.addElement((NS_JMI, element.value))
    child["id"] = sid
    for grandchild in children:
        child.addChild(grandchild)
    message.addElement((NS_HINTS, "store"))
    return message


def reason_children(
    condition: Reason, text: str | None = None, tie_break: bool = False
) -> list[domish.Element]:
    children = [build_reason(condition, text)]
    if tie_break:
        children.append(domish.Element((NS_JMI, "tie-break")))
    return children


def jmi_child(message: domish.Element) -> domish.Element | None:
    """The (first) JMI element of a message."""
    for child in message.elements():
        if child.uri == NS_JMI and child.name in ELEMENT_NAMES:
            return child
    return None


def proposal_descriptions(propose: domish.Element) -> list[domish.Element]:
    """The ``<description/>`` children of a propose (any namespace but JMI's)."""
    return [c for c in propose.elements() if c.name == "description" and c.uri != NS_JMI]


def wins(sid: str, sender: JID, other_sid: str, other_sender: JID) -> bool:
    """Tie-break: True when (``sid`` sent by ``sender``) overrules the other proposal."""
    key, other = sid.encode(), other_sid.encode()
    if key != other:
        return key < other
    return sender.full().encode() < other_sender.full().encode()


def human_size(size: int | None) -> str:
    if size is None:
        return "unknown size"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def file_metadata(description: domish.Element) -> dict[str, Any] | None:
    """The metadata of a XEP-0234 file offer's description (None if it has no ``<file/>``);
    the keys of the XEP-0234 action data."""
    file_el = next(description.elements(NS_FT, "file"), None)
    if file_el is None:
        return None
    values: dict[str, str] = {}
    for child in file_el.elements(NS_FT):
        if child.name in ("name", "size", "desc", "media-type", "mediaType", "date"):
            values.setdefault(child.name, str(child).strip()[:MAX_TEXT])
    size_text = values.get("size", "")
    # ASCII digits only: str.isdigit() accepts other scripts' digits (and "²", which int refuses)
    valid = size_text.isascii() and size_text.isdigit() and len(size_text) <= 20
    size = int(size_text) if valid else None
    algos = [h.getAttribute("algo") or "" for h in file_el.elements(NS_HASHES, "hash")]
    algos += [h.getAttribute("algo") or "" for h in file_el.elements(NS_HASHES, "hash-used")]
    return {
        "name": values.get("name", "")[:255],
        "size": size,
        "desc": values.get("desc", ""),
        "media_type": values.get("media-type")
        or values.get("mediaType")
        or "application/octet-stream",
        "date": values.get("date", ""),
        "hash_algo": _best_algo(a for a in algos if a),
    }


def _best_algo(algos: Iterable[str]) -> str:
    preference = ("sha-256", "sha-512", "sha3-256", "blake2b-256", "sha-1")
    available = set(algos)
    return next((a for a in preference if a in available), "")


def _description_signature(description: domish.Element) -> tuple[Any, ...]:
    """What identifies what a description proposes (for a file: name, size and hashes)."""
    if description.uri == NS_FT:
        file_el = next(description.elements(NS_FT, "file"), None)
        if file_el is not None:
            values = {
                c.name: str(c).strip()
                for c in file_el.elements(NS_FT)
                if c.name in ("name", "size")
            }
            digests = sorted(
                (h.getAttribute("algo") or "", str(h).strip())
                for h in file_el.elements(NS_HASHES, "hash")
            )
            return (NS_FT, values.get("name"), values.get("size"), tuple(digests))
    if description.uri == NS_RTP:
        # a call proposes its media only (<description media='audio'/>, as Conversations and
        # Dino send it); the session-initiate then carries the payload types
        return (NS_RTP, description.getAttribute("media") or "")
    return (description.uri, description.toXml())


def descriptions_match(
    proposed: Iterable[domish.Element], offered: Iterable[domish.Element | None]
) -> bool:
    """True when a session offers what was proposed (same descriptions, in any order)."""
    a = sorted(repr(_description_signature(d)) for d in proposed)
    b = sorted(repr(_description_signature(d)) if d is not None else "" for d in offered)
    return a == b


# --- the plugin -------------------------------------------------------------------------------


class XEP_0353:  # noqa: N801 - plugin classes are named after their XEP
    def __init__(self, host: Any) -> None:
        self.host = host
        self.jingle = host.plugins["XEP-0166"]
        host.plugins["XEP-0030"].add_feature(NS_JMI)
        self.timeout = host.config.get_float("jingle_message_timeout", TIMEOUT, minimum=1)
        self.expiry = host.config.get_float("jingle_message_expiry", EXPIRY, minimum=1)
        #: by description namespace: told when a proposal the user accepted here ends without
        #: its session (see :meth:`on_accepted_unstarted`)
        self._unstarted: dict[str, Callable[[Any, Proposal, Reason, str], None]] = {}
        host.trigger.add("message_received", self._on_message, priority=TRIGGER_PRIORITY)

    def on_accepted_unstarted(
        self, namespace: str, callback: Callable[[Any, Proposal, Reason, str], None]
    ) -> None:
        """Have ``callback(client, proposal, reason, text)`` called when a proposal with a
        description of ``namespace``, accepted by our user, ends before its session started
        (the proposer withdrew it, no session-initiate came, the profile disconnected): the
        frontend that accepted waits for that session and must be told (files: the progress
        announced in the action fails; calls: ``call_ended``)."""
        self._unstarted[namespace] = callback

    # --- state --------------------------------------------------------------------------------

    @staticmethod
    def state(client: Any) -> ClientState:
        state: ClientState = client.extra.setdefault(STATE_KEY, ClientState())
        return state

    def get_proposal(self, client: Any, role: Role, peer: JID, sid: str) -> Proposal | None:
        """A known proposal: ours to ``peer`` (role initiator) or ``peer``'s (responder)."""
        return self.state(client).proposals.get((role, peer.userhost(), sid))

    def _forget(self, client: Any, proposal: Proposal) -> None:
        proposals = self.state(client).proposals
        if proposals.get(proposal.key) is proposal:
            del proposals[proposal.key]
        self._cancel_timer(proposal)

    @staticmethod
    def _cancel_timer(proposal: Proposal) -> None:
        if proposal.timer is not None and proposal.timer.active():
            proposal.timer.cancel()
        proposal.timer = None

    def profile_disconnected(self, client: Any) -> None:
        """Every proposal of the profile is over (its actions are cancelled by the core)."""
        state = client.extra.pop(STATE_KEY, None)
        if state is None:
            return
        for proposal in state.proposals.values():
            self._cancel_timer(proposal)
            if proposal.role is Role.INITIATOR and not proposal.proceeded.done():
                proposal.proceeded.set_exception(NotConnected("the profile was disconnected"))
            elif proposal.role is Role.RESPONDER and proposal.state is ProposalState.PROCEEDED:
                self._fail_progress(client, proposal, "the profile was disconnected")
                self._tell_unstarted(
                    client, proposal, Reason.CONNECTIVITY_ERROR, "the profile was disconnected"
                )

    def _send(self, client: Any, message: domish.Element) -> bool:
        try:
            client.send(message)
        except NotConnected as e:
            log.info("%s: JMI message not sent: %s", client.profile, e)
            return False
        return True

    @staticmethod
    def _directed_presence(client: Any, to: JID) -> None:
        """Our presence (with our capabilities, added by XEP-0115's trigger) to ``to`` when
        it does not receive it already (XEP-0353: the initiator along with its propose, the
        responder along with its proceed: the peer learns our availability and features,
        e.g. when the message is delivered late from its archive). Only to entities we
        chose to contact: the peer we call, the caller the user accepted."""
        roster = getattr(client, "roster", None)
        contact = roster.get(to) if roster is not None else None
        if contact is not None and contact.subscription_from:
            return  # they are subscribed to our presence: they have it
        presence = getattr(client, "presence", None)
        if presence is None:
            return
        try:
            presence.send_presence(to)
        except Exception as e:  # noqa: BLE001 - the proposal goes on without it
            log.info("%s: no directed presence to %s: %s", client.profile, to.full(), e)

    def _carbons_enabled(self, client: Any) -> bool:
        return bool(client.extra.get(CARBONS_ENABLED_KEY))

    # --- initiator ----------------------------------------------------------------------------

    async def propose(
        self,
        client: Any,
        peer: JID,
        descriptions: Iterable[domish.Element],
        sid: str | None = None,
        on_ringing: Callable[[JID], None] | None = None,
        timeout: float | None = None,
    ) -> str:
        """Propose a Jingle session to every device of ``peer`` (its bare JID is used).

        Args:
            descriptions: one ``<description/>`` per future content (copied).
            sid: the future Jingle sid (default: a new UUID v4).
            on_ringing: called with the full JID of each device that answers ``<ringing/>``
                (once per device, until the proposal is answered).
            timeout: seconds without answer before the proposal is retracted (default:
                the ``jingle_message_timeout`` option).

        Returns:
            the sid; then :meth:`wait_proceed`.

        Raises:
            InvalidInput: no description, or a sid already used with this peer.
            NotConnected: the profile is not connected.
        """
        copies = tuple(clone(d) for d in descriptions)
        if not copies:
            raise InvalidInput("a proposal needs at least one description")
        bare = peer.userhostJID()
        sid = sid or str(uuid.uuid4())
        if self.get_proposal(client, Role.INITIATOR, bare, sid) is not None:
            raise InvalidInput(f"proposal {sid} to {bare.full()} already exists")
        proposal = Proposal(sid, bare, Role.INITIATOR, copies, on_ringing=on_ringing)
        proposal.timeout = self.timeout if timeout is None else timeout
        proposal.proceeded.add_done_callback(_retrieve)
        client.send(build_message(bare, Element.PROPOSE, sid, (clone(d) for d in copies)))
        self._directed_presence(client, bare)
        self.state(client).proposals[proposal.key] = proposal
        proposal.timer = client.reactor.callLater(
            proposal.timeout, self._outgoing_expired, client, proposal
        )
        log.info("%s: proposed Jingle session %s to %s", client.profile, sid, bare.full())
        return sid

    async def wait_proceed(self, client: Any, peer: JID, sid: str) -> JID:
        """Wait for the answer to our proposal ``sid`` to ``peer``.

        Returns:
            the full JID of the device that proceeded: send the session-initiate there, with
            ``sid`` as sid.

        Raises:
            NotFound: no such proposal (unknown, or already read).
            ProposalEnded: rejected, or retracted (tie-break lost, :meth:`retract`).
            OperationTimeout: no answer in time (we retracted it).
            XMPPError: the propose bounced (no device of the peer reachable).
            NotConnected: the profile disconnected.
        """
        proposal = self.get_proposal(client, Role.INITIATOR, peer, sid)
        if proposal is None:
            raise NotFound(f"no proposal {sid} to {peer.userhost()}")
        try:
            return await asyncio.shield(proposal.proceeded)
        finally:
            if proposal.proceeded.done():
                self._forget(client, proposal)

    def retract(self, client: Any, peer: JID, sid: str, reason: Reason = Reason.CANCEL) -> bool:
        """Withdraw our unanswered proposal (``<retract/>`` to the peer's bare JID); False
        when there is no such unanswered proposal. :meth:`wait_proceed` raises
        :class:`ProposalEnded`."""
        proposal = self.get_proposal(client, Role.INITIATOR, peer, sid)
        if proposal is None or proposal.state is not ProposalState.PROPOSED:
            return False
        self._retract(client, proposal, reason)
        self._end_outgoing(
            proposal,
            ProposalEnded(f"proposal {sid} cancelled ({reason.value})", ProposalState.RETRACTED),
            ProposalState.RETRACTED,
        )
        return True

    def _retract(
        self, client: Any, proposal: Proposal, reason: Reason, tie_break: bool = False
    ) -> None:
        self._send(
            client,
            build_message(
                proposal.peer,
                Element.RETRACT,
                proposal.sid,
                reason_children(reason, tie_break=tie_break),
            ),
        )

    @staticmethod
    def _end_outgoing(proposal: Proposal, error: BaseException, state: ProposalState) -> None:
        """Our proposal failed (the record stays until wait_proceed reads it or it expires)."""
        proposal.state = state
        if not proposal.proceeded.done():
            proposal.proceeded.set_exception(error)

    def _outgoing_expired(self, client: Any, proposal: Proposal) -> None:
        proposal.timer = None
        if proposal.state is ProposalState.PROPOSED:
            log.info(
                "%s: no answer to proposal %s from %s", client.profile, proposal.sid, proposal.peer
            )
            self._retract(client, proposal, Reason.TIMEOUT)
            self._end_outgoing(
                proposal,
                OperationTimeout(
                    f"{proposal.peer.full()} did not answer within {proposal.timeout:g} s"
                ),
                ProposalState.EXPIRED,
            )
        self._forget(client, proposal)

    def _on_answer(self, client: Any, sender: JID, child: domish.Element, sid: str) -> None:
        """ringing / proceed / reject from the peer about one of our proposals."""
        proposal = self.get_proposal(client, Role.INITIATOR, sender, sid)
        if proposal is None or proposal.state is not ProposalState.PROPOSED:
            log.debug(
                "%s: %s about no pending proposal of ours (%s)", client.profile, child.name, sid
            )
            return
        if child.name == Element.RINGING:
            if sender.full() in proposal.ringing:
                return
            proposal.ringing.add(sender.full())
            log.info("%s: %s is ringing for %s", client.profile, sender.full(), sid)
            if proposal.on_ringing is not None:
                try:
                    proposal.on_ringing(sender)
                except Exception:
                    log.exception("%s: ringing callback of %s failed", client.profile, sid)
        elif child.name == Element.PROCEED:
            if not sender.resource:
                log.warning("%s: ignoring a proceed from a bare JID (%s)", client.profile, sender)
                return
            proposal.state = ProposalState.PROCEEDED
            proposal.proceeded.set_result(sender)
            log.info("%s: %s proceeds with %s", client.profile, sender.full(), sid)
        elif child.name == Element.REJECT:
            reason = _reason(child)
            tie_break = next(child.elements(NS_JMI, "tie-break"), None) is not None
            condition = reason.condition if reason else None
            text = f"{sender.userhost()} declined"
            if tie_break:
                text += " (tie-break: its own proposal wins)"
            elif condition is not None:
                text += f" ({condition.value})"
            self._end_outgoing(
                proposal,
                ProposalEnded(text, ProposalState.REJECTED, condition, tie_break),
                ProposalState.REJECTED,
            )

    def _on_bounce(self, client: Any, message: domish.Element) -> bool:
        """An error bounce of one of our proposes; True when it was one."""
        message_id = message.getAttribute("id") or ""
        prefix = f"jm-{Element.PROPOSE.value}-"
        if not message_id.startswith(prefix):
            return False
        try:
            sender = parse_jid(message.getAttribute("from") or "")
        except InvalidFormat:
            return False
        proposal = self.get_proposal(
            client, Role.INITIATOR, sender, message_id.removeprefix(prefix)
        )
        if proposal is None:
            return False
        if proposal.state is ProposalState.PROPOSED:
            condition = "undefined-condition"
            error = next((c for c in message.elements() if c.name == "error"), None)
            if error is not None:
                for child in error.elements():
                    if child.uri == "urn:ietf:params:xml:ns:xmpp-stanzas" and child.name != "text":
                        condition = child.name
                        break
            self._end_outgoing(
                proposal,
                XMPPError(f"{proposal.peer.full()} cannot be reached: {condition}", condition),
                ProposalState.EXPIRED,
            )
        return True

    # --- after the proposal: the Jingle session -------------------------------------------

    def track(self, client: Any, session: Session) -> None:
        """Send ``<finish/>`` to the session's peer when the Jingle session ``session``
        (started after a proposal) ends. Idempotent."""
        if session.extra.get(SESSION_TRACKED_KEY):
            return
        session.extra[SESSION_TRACKED_KEY] = True

        def ended(future: asyncio.Future[ReasonElement]) -> None:
            if future.cancelled():
                return
            reason = future.result()
            self.finish(client, session.peer, session.sid, reason.condition)

        session.ended.add_done_callback(ended)

    def finish(self, client: Any, peer: JID, sid: str, reason: Reason = Reason.SUCCESS) -> None:
        """Send ``<finish/>`` for ``sid`` to the peer's full JID (never raises)."""
        if not client.is_connected():
            return
        self._send(client, build_message(peer, Element.FINISH, sid, reason_children(reason)))

    def take_accepted(self, client: Any, session: Session) -> PreAccepted | None:
        """The user's answer given during the proposal of ``session``, if the user already
        accepted it; consumed (once) and the finish of the session arranged.

        To be called by the Jingle application when the peer's session-initiate arrives
        (``on_session_initiate``), before asking the user: with a result, do not ask again,
        use ``answer`` as the user's answer and ``progress_id`` for the transfer's progress.

        None (ask as usual) when: no proposal of this full JID with this sid was accepted here,
        or the session offers something else than what was proposed (logged).
        """
        if session.role is not Role.RESPONDER:
            return None
        proposal = self.get_proposal(client, Role.RESPONDER, session.peer, session.sid)
        if (
            proposal is None
            or proposal.state is not ProposalState.PROCEEDED
            or proposal.peer != session.peer
            or proposal.answer is None
        ):
            return None
        offered = [c.description for c in session.contents.values()]
        self._forget(client, proposal)
        if not descriptions_match(proposal.descriptions, offered):
            log.warning(
                "%s: session %s from %s offers something else than it proposed: asking again",
                client.profile,
                session.sid,
                session.peer.full(),
            )
            proposal.state = ProposalState.EXPIRED
            self._fail_progress(client, proposal, "the sender offered something else")
            return None
        proposal.state = ProposalState.STARTED
        self.track(client, session)
        action_id = proposal.action.id if proposal.action is not None else ""
        return PreAccepted(dict(proposal.answer), proposal.progress_id, action_id)

    # --- responder ----------------------------------------------------------------------------

    def _on_propose(self, client: Any, sender: JID, propose: domish.Element, sid: str) -> None:
        state = self.state(client)
        bare = sender.userhost()
        if (bare, sid) in state.seen or self.get_proposal(client, Role.RESPONDER, sender, sid):
            log.debug("%s: proposal %s from %s already known", client.profile, sid, bare)
            return
        if not sender.resource:
            log.warning("%s: ignoring a proposal from a bare JID (%s)", client.profile, bare)
            return
        descriptions = proposal_descriptions(propose)
        if not descriptions or len(descriptions) > MAX_DESCRIPTIONS:
            log.warning("%s: ignoring a proposal from %s: bad descriptions", client.profile, bare)
            return
        unsupported = {d.uri for d in descriptions} - set(self.jingle.applications)
        if unsupported:
            # maybe for another device of ours (calls...): no answer at all
            log.info(
                "%s: ignoring proposal %s from %s (unsupported: %s)",
                client.profile,
                sid,
                bare,
                ", ".join(sorted(str(u) for u in unsupported)),
            )
            return
        pending = [
            p
            for p in state.proposals.values()
            if p.role is Role.RESPONDER and p.state is ProposalState.PROPOSED
        ]
        if len(pending) >= MAX_PENDING or (
            sum(1 for p in pending if p.peer.userhost() == bare) >= MAX_PENDING_PER_PEER
        ):
            log.warning(
                "%s: too many pending proposals: ignoring %s from %s", client.profile, sid, bare
            )
            return
        state.seen.append((bare, sid))
        if not self._tie_break(client, sender, sid):
            return
        proposal = Proposal(sid, sender, Role.RESPONDER, tuple(clone(d) for d in descriptions))
        proposal.in_roster = client.roster is not None and client.roster.get(sender) is not None
        files = [file_metadata(d) for d in descriptions if d.uri == NS_FT]
        if files:
            proposal.progress_id = time_ordered_uuid()
        state.proposals[proposal.key] = proposal
        proposal.action = self.host.actions.new(client, self.action_data(client, proposal))
        proposal.timer = client.reactor.callLater(
            self.expiry, self._incoming_expired, client, proposal
        )
        if proposal.in_roster:
            # never to strangers: answering would tell them we are online
            self._send(client, build_message(sender, Element.RINGING, sid))
        background(self._ask(client, proposal), f"JMI proposal {sid}")

    def _tie_break(self, client: Any, sender: JID, sid: str) -> bool:
        """Both sides proposed: True when the peer's proposal ``sid`` goes on."""
        ours = [
            p
            for p in self.state(client).proposals.values()
            if p.role is Role.INITIATOR
            and p.state is ProposalState.PROPOSED
            and p.peer.userhost() == sender.userhost()
        ]
        if not ours:
            return True
        if any(wins(p.sid, client.jid, sid, sender) for p in ours):
            log.info("%s: tie-break: our proposal wins over %s", client.profile, sid)
            self._send(
                client,
                build_message(
                    sender, Element.REJECT, sid, reason_children(Reason.EXPIRED, tie_break=True)
                ),
            )
            return False
        for proposal in ours:
            log.info("%s: tie-break: %s wins over our %s", client.profile, sid, proposal.sid)
            self._retract(client, proposal, Reason.EXPIRED, tie_break=True)
            self._end_outgoing(
                proposal,
                ProposalEnded(
                    f"{sender.userhost()} proposed a session at the same time, and its "
                    "proposal wins (tie-break)",
                    ProposalState.RETRACTED,
                    Reason.EXPIRED,
                    tie_break=True,
                ),
                ProposalState.RETRACTED,
            )
        return True

    def action_data(self, client: Any, proposal: Proposal) -> dict[str, Any]:
        """The ``action_new`` data of a peer's proposal.

        For files (XEP-0234 descriptions), the keys of the XEP-0234 offer (contract D) with
        ``subtype`` ``"jingle_message"`` (the session is not started yet) and the
        ``progress_id`` the transfer will have once accepted::

            {"type": "file", "subtype": "jingle_message", "from_jid": full JID,
             "session_id": sid, "progress_id": id, "in_roster": bool,
             "file": {"name", "size", "desc", "media_type", "date", "hash_algo"},
             "files": [... one per description ...], "message": str}

        Calls (XEP-0167 descriptions only): ``{"type": "call", "subtype": "jingle_message",
        "from_jid", "session_id", "in_roster", "media": ["audio", "video"...], "message"}``;
        once accepted here, the call's session-initiate comes with ``pre_accepted``.

        Other applications: ``{"type": "jingle", "subtype": "jingle_message", "from_jid",
        "session_id", "in_roster", "applications": [namespaces], "message"}``.
        """
        peer = proposal.peer
        data: dict[str, Any] = {
            "subtype": "jingle_message",
            "from_jid": peer.full(),
            "session_id": proposal.sid,
            "in_roster": proposal.in_roster,
        }
        files = [file_metadata(d) for d in proposal.descriptions if d.uri == NS_FT]
        files_ok = [f for f in files if f is not None]
        if files and len(files_ok) == len(proposal.descriptions):
            first = files_ok[0]
            if len(files_ok) == 1:
                message = (
                    f'{peer.userhost()} wants to send you "{first["name"] or "a file"}" '
                    f"({human_size(first['size'])})"
                )
                if first["desc"]:
                    message += f": {first['desc']}"
            else:
                names = ", ".join(f'"{f["name"] or "a file"}"' for f in files_ok)
                message = f"{peer.userhost()} wants to send you {len(files_ok)} files: {names}"
            data.update(
                type="file",
                progress_id=proposal.progress_id,
                file=first,
                files=files_ok,
                message=message,
            )
        elif proposal.descriptions and all(d.uri == NS_RTP for d in proposal.descriptions):
            media = [str(d.getAttribute("media", "")) for d in proposal.descriptions]
            kind = "video" if "video" in media else "audio"
            data.update(
                type="call",
                media=media,
                message=f"{peer.userhost()} is calling you ({kind})",
            )
        else:
            namespaces = [str(d.uri) for d in proposal.descriptions]
            data.update(
                type="jingle",
                applications=namespaces,
                message=f"{peer.userhost()} proposes a Jingle session ({', '.join(namespaces)})",
            )
        return data

    async def _ask(self, client: Any, proposal: Proposal) -> None:
        try:
            answer = await proposal.action.answer
        except ActionCancelled:
            return
        if proposal.state is not ProposalState.PROPOSED:
            return
        accept = isinstance(answer, dict) and answer.get("accept") is True
        own = client.jid.userhostJID()
        if accept:
            proposal.state = ProposalState.PROCEEDED
            proposal.answer = dict(answer)
            self._send(client, build_message(proposal.peer, Element.PROCEED, proposal.sid))
            self._directed_presence(client, proposal.peer)
            if not self._carbons_enabled(client):
                self._send(client, build_message(own, Element.ACCEPT, proposal.sid))
            self._cancel_timer(proposal)
            # the session-initiate must follow
            proposal.timer = client.reactor.callLater(
                self.timeout, self._session_missing, client, proposal
            )
            return
        proposal.state = ProposalState.REJECTED
        self._forget(client, proposal)
        reject = reason_children(Reason.BUSY)
        self._send(client, build_message(proposal.peer, Element.REJECT, proposal.sid, reject))
        if not self._carbons_enabled(client):
            copy = reason_children(Reason.BUSY)
            self._send(client, build_message(own, Element.REJECT, proposal.sid, copy))

    def _incoming_expired(self, client: Any, proposal: Proposal) -> None:
        proposal.timer = None
        if proposal.state is ProposalState.PROPOSED:
            proposal.state = ProposalState.EXPIRED
            self._forget(client, proposal)
            if proposal.action is not None:
                proposal.action.cancel(REASON_EXPIRED)

    def _session_missing(self, client: Any, proposal: Proposal) -> None:
        """We proceeded but no session-initiate came (through :meth:`take_accepted`)."""
        proposal.timer = None
        if proposal.state is not ProposalState.PROCEEDED:
            return
        self._forget(client, proposal)
        session = self.jingle.get_session(client, proposal.peer, proposal.sid)
        if session is not None and not session.is_ended:
            # the session came, but its application did not take the acceptance (it asked
            # the user again): only its finish is left to us
            proposal.state = ProposalState.STARTED
            self.track(client, session)
            return
        proposal.state = ProposalState.EXPIRED
        if proposal.elsewhere:
            self._fail_progress(client, proposal, REASON_ACCEPTED_ELSEWHERE)
            self._tell_unstarted(client, proposal, Reason.CANCEL, REASON_ACCEPTED_ELSEWHERE)
            return
        log.info("%s: %s never started session %s", client.profile, proposal.peer, proposal.sid)
        self._fail_progress(client, proposal, "the sender did not start the transfer")
        self._tell_unstarted(
            client, proposal, Reason.EXPIRED, f"{proposal.peer.full()} never started the session"
        )
        self.finish(client, proposal.peer, proposal.sid, Reason.EXPIRED)

    def _tell_unstarted(self, client: Any, proposal: Proposal, reason: Reason, text: str) -> None:
        """The applications of a proposal our user accepted: it ends without its session."""
        callbacks = {
            id(cb): cb
            for d in proposal.descriptions
            if (cb := self._unstarted.get(str(d.uri))) is not None
        }
        for callback in callbacks.values():
            try:
                callback(client, proposal, reason, text)
            except Exception:
                log.exception("%s: proposal %s: end callback failed", client.profile, proposal.sid)

    def _fail_progress(self, client: Any, proposal: Proposal, error: str) -> None:
        """The transfer announced in the action (progress_id) will not happen: the frontend
        following it is told (progress_started then progress_error)."""
        if not proposal.progress_id or proposal.answer is None:
            return
        files = [file_metadata(d) for d in proposal.descriptions if d.uri == NS_FT]
        first = next((f for f in files if f is not None), {})
        try:
            self.host.progress.add(
                client,
                proposal.progress_id,
                lambda: {"position": 0, "size": first.get("size") or 0},
                {
                    "type": "file",
                    "direction": "in",
                    "peer": proposal.peer.full(),
                    "name": first.get("name", ""),
                    "size": first.get("size"),
                    "session_id": proposal.sid,
                    "path": "",
                },
            )
        except LiberviaError as e:  # already running: its owner reports its end
            log.info("%s: progress %s: %s", client.profile, proposal.progress_id, e)
            return
        self.host.progress.fail(client, proposal.progress_id, error)

    def _on_withdrawn(self, client: Any, sender: JID, sid: str, what: str) -> None:
        """retract (or finish before any session) from the proposer."""
        proposal = self.get_proposal(client, Role.RESPONDER, sender, sid)
        if proposal is None:
            # withdrawn before we saw the propose (delivery order): never ask it
            self.state(client).seen.append((sender.userhost(), sid))
            return
        if proposal.state is ProposalState.PROPOSED:
            proposal.state = ProposalState.RETRACTED
            self._forget(client, proposal)
            log.info("%s: %s %s proposal %s", client.profile, sender.full(), what, sid)
            if proposal.action is not None:
                proposal.action.cancel(REASON_RETRACTED)
        elif proposal.state is ProposalState.PROCEEDED:
            proposal.state = ProposalState.RETRACTED
            self._forget(client, proposal)
            log.info(
                "%s: proposal %s, accepted here, withdrawn by %s (%s)",
                client.profile,
                sid,
                sender.full(),
                what,
            )
            self._fail_progress(client, proposal, REASON_RETRACTED)
            # another device of ours also proceeded: the session was most likely its own
            text = REASON_ACCEPTED_ELSEWHERE if proposal.elsewhere else REASON_RETRACTED
            self._tell_unstarted(client, proposal, Reason.CANCEL, text)

    def _on_own_device(
        self, client: Any, child: domish.Element, sid: str, peer: JID | None
    ) -> None:
        """proceed / accept / reject sent by another device of our account."""
        if child.name in (Element.PROCEED, Element.ACCEPT):
            reason = REASON_ACCEPTED_ELSEWHERE
        elif child.name == Element.REJECT:
            reason = REASON_DECLINED_ELSEWHERE
        else:
            return
        for proposal in list(self.state(client).proposals.values()):
            if proposal.role is not Role.RESPONDER or proposal.sid != sid:
                continue
            if peer is not None and proposal.peer.userhost() != peer.userhost():
                continue
            if proposal.state is ProposalState.PROPOSED:
                proposal.state = ProposalState.ELSEWHERE
                self._forget(client, proposal)
                log.info("%s: proposal %s %s", client.profile, sid, reason)
                if proposal.action is not None:
                    proposal.action.cancel(reason)
            elif proposal.state is ProposalState.PROCEEDED:
                proposal.elsewhere = True

    # --- incoming messages --------------------------------------------------------------------

    def _origin(self, client: Any, message: domish.Element) -> str | None:
        """How a message reached us: "direct", "sent" or "received" (a carbon from our own
        server), or None (an archive result, a forged carbon...)."""
        parent = message.parent
        if parent is None:
            return "direct"
        if parent.uri != NS_FORWARD or parent.name != "forwarded":
            return None
        wrapper = parent.parent
        if wrapper is None or wrapper.uri != NS_CARBONS or wrapper.name not in ("sent", "received"):
            return None  # archive results (MAM): not acted upon
        outer = wrapper.parent
        if outer is None or outer.parent is not None:
            return None
        sender = outer.getAttribute("from")
        if sender is not None:
            try:
                ours = parse_jid(sender) == client.jid.userhostJID()
            except InvalidFormat:
                ours = False
            if not ours:
                log.warning("%s: ignoring a forged carbon from %s", client.profile, sender)
                return None
        return str(wrapper.name)

    def _on_message(self, client: Any, message: domish.Element, parsed: Any) -> bool:
        """``message_received`` trigger: JMI messages (never consumed but error bounces)."""
        if message.getAttribute("type") == "error":
            return not (message.parent is None and self._on_bounce(client, message))
        child = jmi_child(message)
        if child is None or message.getAttribute("type") == "groupchat":
            return True
        try:
            self._handle(client, message, child)
        except Exception:
            log.exception("%s: a JMI message could not be handled", client.profile)
        return True

    def _handle(self, client: Any, message: domish.Element, child: domish.Element) -> None:
        sid = child.getAttribute("id")
        if not sid or len(sid) > MAX_ID_LENGTH:
            log.warning("%s: ignoring a JMI %s without a valid id", client.profile, child.name)
            return
        origin = self._origin(client, message)
        if origin is None:
            return
        try:
            sender = parse_jid(message.getAttribute("from") or client.jid.userhost())
            dest = parse_jid(message["to"]) if message.hasAttribute("to") else None
        except InvalidFormat:
            return
        own = client.jid.userhost()
        if sender == client.jid:
            return  # our own stanza (echoed or carbon-copied)
        if origin == "sent":
            if sender.userhost() != own:
                log.warning("%s: ignoring a sent carbon from %s", client.profile, sender.full())
                return
            self._on_own_device(client, child, sid, dest)
            return
        if sender.userhost() == own:
            # another device of ours, to our bare JID (legacy accept, Dino's reject copy)
            if origin == "direct":
                self._on_own_device(client, child, sid, None)
            return
        name = child.name
        if origin == "received":
            # a message to another device of ours: only a withdrawal concerns us too
            if name in (Element.RETRACT, Element.FINISH):
                self._on_withdrawn(client, sender, sid, name)
            return
        if name == Element.PROPOSE:
            self._on_propose(client, sender, child, sid)
        elif name in (Element.RINGING, Element.PROCEED, Element.REJECT):
            self._on_answer(client, sender, child, sid)
        elif name == Element.RETRACT:
            self._on_withdrawn(client, sender, sid, "retracted")
        elif name == Element.FINISH:
            self._on_finish(client, sender, sid)

    def _on_finish(self, client: Any, sender: JID, sid: str) -> None:
        """The peer finished a session (or withdrew a proposal it never started)."""
        log.debug("%s: %s finished %s", client.profile, sender.full(), sid)
        self._on_withdrawn(client, sender, sid, "finished")


def _reason(child: domish.Element) -> ReasonElement | None:
    element = next(child.elements("urn:xmpp:jingle:1", "reason"), None)
    return parse_reason(element) if element is not None else None


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a failed future's exception as retrieved (nobody may be waiting)."""
    if not future.cancelled():
        future.exception()
