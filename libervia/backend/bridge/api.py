"""The one declarative description of the bridge: every method and signal, typed and documented.

D-Bus introspection (:mod:`.render`), the service's argument checks (:mod:`.dbus`), the
frontend client (which introspects the daemon) and ``doc/bridge.rst`` (generated at doc build
time) are all derived from these declarations, so there is no second list to keep in sync.

Core methods and signals are declared below (:data:`CORE_METHODS`, :data:`CORE_SIGNALS`);
plugins add theirs at load time on the ``plugin`` interface (``DBusBridge.add_method`` /
``add_signal``). A :class:`BridgeAPI` is one registry of both; :func:`core_api` returns a fresh
one holding the core declarations.

Types are D-Bus signatures. Structured values that would need a schema of their own cross the
bridge as "serialised dicts": JSON strings with documented keys (``extra``, ``action_data``...).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from dbus_fast.errors import InvalidSignatureError
from dbus_fast.signature import get_signature_tree

from libervia.backend.core.exceptions import InvalidInput

BUS_NAME = "org.libervia.Libervia"
OBJECT_PATH = "/org/libervia/Libervia/bridge"
INTERFACE_PREFIX = "org.libervia.Libervia."
ERROR_PREFIX = "org.libervia.Libervia.Error."
#: short interface names (the full D-Bus name is ``INTERFACE_PREFIX + short``)
INTERFACES = ("core", "plugin")

_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,254}")
_BASIC = frozenset("ybnqiuxtdsog")


def interface_name(short: str) -> str:
    """Full D-Bus name of an interface: ``core`` -> ``org.libervia.Libervia.core``."""
    return INTERFACE_PREFIX + short


def check_signature(signature: str, what: str, *, allow_empty: bool = False) -> None:
    """Check that ``signature`` is one complete D-Bus type (or empty when allowed).

    Raises:
        InvalidInput: the signature is invalid, holds several types, or uses unix fds (``h``:
            the bridge does not negotiate file descriptor passing).
    """
    if signature == "" and allow_empty:
        return
    try:
        tree = get_signature_tree(signature)
    except (InvalidSignatureError, ValueError, TypeError) as e:
        raise InvalidInput(f"{what}: invalid D-Bus signature {signature!r} ({e})") from None
    if len(tree.types) != 1:
        raise InvalidInput(
            f"{what}: {signature!r} must be exactly one complete D-Bus type, not {len(tree.types)}"
        )
    if "h" in signature:
        raise InvalidInput(f"{what}: file descriptors (h) cannot cross the bridge")
    if not _dict_keys_basic(tree.types[0]):
        raise InvalidInput(f"{what}: {signature!r}: dict keys must be basic types")


def _dict_keys_basic(type_: Any) -> bool:
    """dbus-fast's parser accepts ``a{vs}``; the D-Bus specification does not."""
    if type_.token == "{" and type_.children[0].token not in _BASIC:
        return False
    return all(_dict_keys_basic(child) for child in type_.children)


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid {what} name {name!r}: use snake_case (a-z, 0-9, _), starting with a letter"
        )


def _check_args(args: Sequence[Arg], owner: str) -> None:
    seen: set[str] = set()
    for arg in args:
        if not isinstance(arg, Arg):
            raise InvalidInput(f"{owner}: arguments must be Arg instances, got {arg!r}")
        _check_name(arg.name, f"argument of {owner}")
        if arg.name in seen:
            raise InvalidInput(f"{owner}: duplicate argument {arg.name!r}")
        seen.add(arg.name)
        check_signature(arg.signature, f"{owner}, argument {arg.name!r}")


def _check_interface(interface: str, owner: str) -> None:
    if interface not in INTERFACES:
        raise InvalidInput(f"{owner}: unknown interface {interface!r} (one of {INTERFACES})")


@dataclass(frozen=True)
class Arg:
    """One argument of a method or signal: a name, a D-Bus type, a short doc."""

    name: str
    signature: str
    doc: str = ""


@dataclass(frozen=True)
class Method:
    """A bridge method.

    ``returns`` is one complete D-Bus type, or ``""`` when the method returns nothing.
    ``before_ready`` methods are answered while the daemon is still starting; every other
    method waits until it is ready.
    """

    name: str
    args: tuple[Arg, ...]
    returns: str
    doc: str
    interface: str = "core"
    before_ready: bool = False
    returns_doc: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "args", tuple(self.args))
        _check_name(self.name, "method")
        _check_interface(self.interface, self.name)
        _check_args(self.args, self.name)
        check_signature(self.returns, f"{self.name}, return value", allow_empty=True)

    @cached_property
    def in_signature(self) -> str:
        return "".join(a.signature for a in self.args)

    @cached_property
    def full_interface(self) -> str:
        return interface_name(self.interface)


@dataclass(frozen=True)
class Signal:
    """A bridge signal (sent by the daemon to every frontend listening)."""

    name: str
    args: tuple[Arg, ...]
    doc: str
    interface: str = "core"

    def __post_init__(self) -> None:
        object.__setattr__(self, "args", tuple(self.args))
        _check_name(self.name, "signal")
        _check_interface(self.interface, self.name)
        _check_args(self.args, self.name)

    @cached_property
    def signature(self) -> str:
        return "".join(a.signature for a in self.args)

    @cached_property
    def full_interface(self) -> str:
        return interface_name(self.interface)


@dataclass
class BridgeAPI:
    """A registry of methods and signals (the core ones plus what plugins add).

    Names are unique among methods and among signals, whatever the interface: frontends call
    a method by its name alone.
    """

    methods: dict[str, Method] = field(default_factory=dict)
    signals: dict[str, Signal] = field(default_factory=dict)

    @classmethod
    def of(cls, methods: Iterable[Method] = (), signals: Iterable[Signal] = ()) -> BridgeAPI:
        api = cls()
        for m in methods:
            api.add_method(m)
        for s in signals:
            api.add_signal(s)
        return api

    def add_method(self, method: Method) -> Method:
        """Register a method. Raises InvalidInput if the name is taken."""
        if not isinstance(method, Method):
            raise InvalidInput(f"not a Method: {method!r}")
        if method.name in self.methods:
            raise InvalidInput(f"bridge method {method.name!r} is already declared")
        self.methods[method.name] = method
        return method

    def add_signal(self, signal: Signal) -> Signal:
        """Register a signal. Raises InvalidInput if the name is taken."""
        if not isinstance(signal, Signal):
            raise InvalidInput(f"not a Signal: {signal!r}")
        if signal.name in self.signals:
            raise InvalidInput(f"bridge signal {signal.name!r} is already declared")
        self.signals[signal.name] = signal
        return signal

    def interface_members(self, interface: str) -> tuple[list[Method], list[Signal]]:
        """Methods and signals of one interface (short name), in declaration order."""
        return (
            [m for m in self.methods.values() if m.interface == interface],
            [s for s in self.signals.values() if s.interface == interface],
        )

    def __iter__(self) -> Iterator[Method | Signal]:
        yield from self.methods.values()
        yield from self.signals.values()

    def introspection_xml(self) -> str:
        """Standard D-Bus introspection XML of the bridge object."""
        from libervia.backend.bridge.render import introspection_xml

        return introspection_xml(self)

    def to_rst(self, section_chars: str = '~^"') -> str:
        """reStructuredText reference of every method and signal, a section per interface."""
        from libervia.backend.bridge.render import to_rst

        return to_rst(self, section_chars)


def core_api() -> BridgeAPI:
    """A fresh registry holding the core declarations (plugins add to their own copy)."""
    return BridgeAPI.of(CORE_METHODS, CORE_SIGNALS)


# --- core declarations ---------------------------------------------------------------------

A = Arg
PROFILE_KEY = A("profile_key", "s", 'profile name, or "@DEFAULT@" for the default profile')
PROFILE = A("profile", "s", "profile name")
SECURITY_LIMIT = A(
    "security_limit", "i", "highest security level the caller may see or set; -1: no limit"
)

CORE_METHODS: tuple[Method, ...] = (
    # daemon
    Method(
        "ready_get",
        (),
        "",
        "Return once the daemon is ready (storage open, plugins loaded). Frontends call it "
        "first: every method not marked as available before readiness waits for it anyway.",
        before_ready=True,
    ),
    Method(
        "version_get",
        (),
        "s",
        "Version of the daemon.",
        before_ready=True,
        returns_doc="version string, e.g. 0.10.0.dev0",
    ),
    # profiles
    Method(
        "profile_create",
        (
            PROFILE,
            A("password", "s", "password protecting the profile (may be empty)"),
            A("component", "s", 'entry point of a component profile, "" for a client'),
        ),
        "",
        "Create a profile. Fails with ProfileExists if the name is taken.",
    ),
    Method(
        "profile_delete_async",
        (PROFILE,),
        "",
        "Delete a profile and everything stored for it (disconnecting it first).",
    ),
    Method(
        "profiles_list_get",
        (
            A("clients", "b", "include client profiles"),
            A("components", "b", "include component profiles"),
        ),
        "as",
        "List the profile names.",
        returns_doc="profile names, sorted",
    ),
    Method(
        "profile_is_session_started",
        (PROFILE_KEY,),
        "b",
        "Tell whether the profile's session is started (its password given).",
    ),
    Method(
        "profile_start_session",
        (A("password", "s", "the profile's password"), PROFILE_KEY),
        "b",
        "Start the profile's session (unlocks its encrypted data). Fails with PasswordError.",
        returns_doc="true if the session was already started",
    ),
    Method(
        "profile_name_get",
        (PROFILE_KEY,),
        "s",
        'Resolve a profile key to a profile name ("@DEFAULT@" is the default profile). '
        "Fails with ProfileUnknown.",
    ),
    Method("profile_set_default", (PROFILE,), "", "Make a profile the default one."),
    Method(
        "profile_password_set",
        (
            A("old_password", "s", "current profile password (empty for an unprotected one)"),
            A("new_password", "s", "new profile password (empty: unprotected)"),
            PROFILE_KEY,
        ),
        "",
        "Change the password protecting a profile (only its key is re-encrypted). Fails with "
        "PasswordError when old_password is wrong.",
    ),
    # connection
    Method(
        "connect",
        (
            PROFILE_KEY,
            A("password", "s", "profile password (starts the session if needed)"),
            A("options", "a{ss}", "connection options (none defined yet)"),
        ),
        "b",
        "Connect the profile to its XMPP server; the connected signal follows.",
        returns_doc="true if it was already connected",
    ),
    Method("disconnect", (PROFILE_KEY,), "", "Disconnect the profile from its XMPP server."),
    Method("is_connected", (PROFILE_KEY,), "b", "Tell whether the profile is connected."),
    # parameters
    Method(
        "param_set",
        (
            A("name", "s", "parameter name"),
            A("value", "s", "new value, as a string"),
            A("category", "s", "parameter category"),
            SECURITY_LIMIT,
            PROFILE_KEY,
        ),
        "",
        "Set a parameter. Fails with PermissionDenied above the security limit.",
    ),
    Method(
        "param_get_a_async",
        (
            A("name", "s", "parameter name"),
            A("category", "s", "parameter category"),
            A("attribute", "s", 'attribute to read, usually "value"'),
            SECURITY_LIMIT,
            PROFILE_KEY,
        ),
        "s",
        'Read an attribute of a parameter (its value, as a string, for "value").',
    ),
    # messages
    Method(
        "message_send",
        (
            A("to_jid", "s", "recipient"),
            A("message", "a{ss}", 'language -> text ("" = no language)'),
            A("subject", "a{ss}", 'language -> subject ("" = no language)'),
            A("mess_type", "s", 'chat, normal, groupchat, headline, or "auto"'),
            A("extra", "s", "serialised dict of extra data"),
            PROFILE_KEY,
        ),
        "",
        "Send a message.",
    ),
    Method(
        "history_get",
        (
            A("from_jid", "s", 'one side of the conversation ("" = any)'),
            A("to_jid", "s", 'the other side ("" = any)'),
            A("limit", "i", "maximum number of messages, -1: no limit"),
            A("between", "b", "match both directions between the two entities"),
            A("filters", "a{ss}", "filters (e.g. search, types, not_types, last_stanza_id)"),
            PROFILE,
        ),
        "a(sdssa{ss}a{ss}ss)",
        "Messages from the history, oldest first.",
        returns_doc="(uid, timestamp, from, to, message, subject, type, extra as serialised "
        "dict) per message",
    ),
    # contacts
    Method(
        "contacts_get",
        (PROFILE_KEY,),
        "a(sa{ss}as)",
        "The roster.",
        returns_doc="(jid, attributes, groups) per contact",
    ),
    Method(
        "contact_add",
        (A("entity_jid", "s", "contact"), PROFILE_KEY),
        "",
        "Add a contact and ask for a subscription to its presence.",
    ),
    Method(
        "contact_update",
        (
            A("entity_jid", "s", "contact"),
            A("name", "s", "displayed name"),
            A("groups", "as", "groups of the contact"),
            PROFILE_KEY,
        ),
        "",
        "Change a contact's name and groups.",
    ),
    Method(
        "contact_del",
        (A("entity_jid", "s", "contact"), PROFILE_KEY),
        "",
        "Remove a contact from the roster.",
    ),
    Method(
        "subscription",
        (
            A("sub_type", "s", "subscribed, unsubscribed, subscribe or unsubscribe"),
            A("entity", "s", "the other entity"),
            PROFILE_KEY,
        ),
        "",
        "Answer or send a presence subscription request.",
    ),
    # presence
    Method(
        "presence_set",
        (
            A("to_jid", "s", '"" for a broadcast presence'),
            A("show", "s", 'away, chat, dnd, xa, or "" for available'),
            A("statuses", "a{ss}", 'language -> status text ("" = no language)'),
            PROFILE_KEY,
        ),
        "",
        "Send our presence.",
    ),
    Method(
        "presence_statuses_get",
        (PROFILE_KEY,),
        "a{sa{s(sia{ss})}}",
        "Last presence of every contact.",
        returns_doc="bare jid -> resource -> (show, priority, statuses)",
    ),
    # discovery
    Method(
        "disco_infos",
        (
            A("entity_jid", "s", "entity to query"),
            A("node", "s", '"" for none'),
            A("use_cache", "b", "answer from the cache when possible"),
            PROFILE_KEY,
        ),
        "(asa(sss)a{sa(a{ss}as)})",
        "Service discovery information (XEP-0030) of an entity.",
        returns_doc="(features, identities as (category, type, name), extensions: form "
        "namespace -> list of (fields, values))",
    ),
    Method(
        "disco_items",
        (
            A("entity_jid", "s", "entity to query"),
            A("node", "s", '"" for none'),
            A("use_cache", "b", "answer from the cache when possible"),
            PROFILE_KEY,
        ),
        "a(sss)",
        "Service discovery items (XEP-0030) of an entity.",
        returns_doc="(jid, node, name) per item",
    ),
    # actions and progress
    Method(
        "action_launch",
        (
            A("action_id", "s", "id received with action_new"),
            A("data", "s", "serialised dict: the answer (its keys depend on the action type)"),
            PROFILE_KEY,
        ),
        "s",
        "Answer an action announced by action_new (e.g. a file offer: "
        '{"accept": true, "path": directory, "overwrite": false}). Fails with NotFound when '
        "the action is unknown, already answered or cancelled, and InvalidInput when data is "
        "not a JSON object.",
        returns_doc='serialised dict, "{}" for now',
    ),
    Method(
        "progress_get",
        (A("progress_id", "s", "id received with progress_started"), PROFILE),
        "a{ss}",
        "Position of a running operation. Fails with NotFound when it is unknown or already "
        "finished or failed.",
        returns_doc='{"position": bytes done, "size": total bytes}, numbers as decimal strings',
    ),
    Method(
        "progress_get_all",
        (A("profile", "s", 'profile name, "@DEFAULT@", or "@ALL@" for every profile'),),
        "a{sa{sa{ss}}}",
        "Positions of every running operation.",
        returns_doc="profile -> progress id -> position (as progress_get); a named profile is "
        'always present (maybe empty), "@ALL@" lists the profiles with running operations',
    ),
)

CORE_SIGNALS: tuple[Signal, ...] = (
    Signal("connected", (A("jid_s", "s", "full JID bound"), PROFILE), "A profile is connected."),
    Signal("disconnected", (PROFILE,), "A profile is disconnected."),
    Signal(
        "message_new",
        (
            A("uid", "s", "history uid"),
            A("timestamp", "d", "seconds since the epoch"),
            A("from_jid", "s", "sender"),
            A("to_jid", "s", "recipient"),
            A("message", "a{ss}", "language -> text"),
            A("subject", "a{ss}", "language -> subject"),
            A("mess_type", "s", "message type"),
            A("extra", "s", "serialised dict"),
            PROFILE,
        ),
        "A message was received or sent.",
    ),
    Signal(
        "presence_update",
        (
            A("entity_jid", "s", "full JID"),
            A("show", "s", '"" for available'),
            A("priority", "i", "presence priority"),
            A("statuses", "a{ss}", "language -> text"),
            PROFILE,
        ),
        "A contact's presence changed.",
    ),
    Signal(
        "contact_new",
        (
            A("contact_jid", "s", "contact"),
            A("attributes", "a{ss}", "name, subscription..."),
            A("groups", "as", "groups"),
            PROFILE,
        ),
        "A contact was added or changed.",
    ),
    Signal("contact_deleted", (A("entity_jid", "s", "contact"), PROFILE), "A contact was removed."),
    Signal(
        "action_new",
        (
            A("action_data", "s", "serialised dict describing the action"),
            A("action_id", "s", "id to answer with"),
            SECURITY_LIMIT,
            PROFILE,
        ),
        "Something needs the user (a confirmation, a form...); answer it with action_launch. "
        'action_data has at least "type" (e.g. "file", "subscription").',
    ),
    Signal(
        "action_update",
        (
            A("action_id", "s", "id of the action (as in action_new)"),
            A("data", "s", 'serialised dict, e.g. {"status": "cancelled", "reason": "..."}'),
            PROFILE,
        ),
        'A pending action changed: with status "cancelled" it can no longer be answered '
        '(reason "disconnected": the profile disconnected; or the peer cancelled, or another '
        "device answered): frontends stop asking.",
    ),
    Signal(
        "progress_started",
        (A("id", "s", "progress id"), A("metadata", "s", "serialised dict"), PROFILE),
        "A long operation started.",
    ),
    Signal(
        "progress_finished",
        (A("id", "s", "progress id"), A("metadata", "s", "serialised dict"), PROFILE),
        "A long operation finished.",
    ),
    Signal(
        "progress_error",
        (A("id", "s", "progress id"), A("error", "s", "what went wrong"), PROFILE),
        "A long operation failed.",
    ),
)
