"""Actions: questions to the user (``host.actions``).

Core or a plugin that needs the user (accept a file, a subscription, a form...) creates an
action; frontends are told by the ``action_new`` signal and answer with the ``action_launch``
bridge method::

    action = host.actions.new(client, {"type": "file", ...})
    try:
        answer = await action.answer          # the dict the frontend sent
    except ActionCancelled as e:              # cancelled before the user answered
        ...

Signals (see ``bridge/api.py``):

- ``action_new(action_data, action_id, security_limit, profile)`` when an action is created;
- ``action_update(action_id, data, profile)`` with ``{"status": "cancelled", "reason": ...}``
  when it is cancelled (a peer retracted its offer, another device answered, the profile
  disconnected: reason ``"disconnected"``), so that frontends stop asking.

An action lives until it is answered or cancelled; its id is then unknown (``NotFound``).
Awaiting ``action.answer`` is optional: an unawaited cancelled action logs nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from libervia.backend.core.exceptions import ActionCancelled, InvalidInput, NotFound
from libervia.backend.core.log import get_logger
from libervia.backend.tools.ids import time_ordered_uuid

if TYPE_CHECKING:
    from libervia.backend.core.xmpp import LiberviaClient

log = get_logger(__name__)

#: reason given to the actions of a profile that disconnects
REASON_DISCONNECTED = "disconnected"


class Action:
    """One pending question to the user.

    Attributes:
        id: the id frontends answer with (``action_launch``).
        profile: the profile the action belongs to.
        data: what was sent in ``action_new``.
        security_limit: security level of the action (sent in ``action_new``).
        answer: resolved with the frontend's answer (a dict), or failed with
            :class:`~libervia.backend.core.exceptions.ActionCancelled`.
    """

    def __init__(
        self,
        actions: ActionManager,
        action_id: str,
        profile: str,
        data: dict[str, Any],
        security_limit: int,
    ) -> None:
        self._actions = actions
        self.id = action_id
        self.profile = profile
        self.data = data
        self.security_limit = security_limit
        self.answer: asyncio.Future[dict[str, Any]] = asyncio.get_event_loop().create_future()
        self.answer.add_done_callback(self._done)

    @property
    def pending(self) -> bool:
        """True until the action is answered or cancelled."""
        return not self.answer.done()

    def cancel(self, reason: str) -> None:
        """Cancel the action: ``action_update`` (status ``cancelled``) is emitted and
        :attr:`answer` fails with ``ActionCancelled(reason)``. Nothing happens if the action is
        already answered or cancelled."""
        if self.answer.done():
            return
        self._actions._forget(self)
        self._actions._emit(
            "action_update",
            self.id,
            json.dumps({"status": "cancelled", "reason": reason}),
            self.profile,
        )
        self.answer.set_exception(ActionCancelled(reason))
        # retrieved here: whoever awaits the answer still gets the exception, and a cancelled
        # action nobody awaits does not log "exception was never retrieved"
        self.answer.exception()

    def _done(self, future: asyncio.Future[dict[str, Any]]) -> None:
        # the awaiting code gave up (its task was cancelled, so was the future): frontends
        # must stop asking
        if future.cancelled() and self._actions._forget(self):
            self._actions._emit(
                "action_update",
                self.id,
                json.dumps({"status": "cancelled", "reason": "cancelled"}),
                self.profile,
            )

    def __repr__(self) -> str:
        return f"<Action {self.id} of {self.profile!r}: {self.data.get('type', '?')}>"


class ActionManager:
    """The pending actions of every profile (``host.actions``)."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self._actions: dict[str, Action] = {}

    def _emit(self, signal: str, *args: Any) -> None:
        self.host.bridge.emit(signal, *args)

    def _forget(self, action: Action) -> bool:
        """Remove a pending action; False if it was not registered any more."""
        if self._actions.get(action.id) is action:
            del self._actions[action.id]
            return True
        return False

    def new(self, client: LiberviaClient, data: dict[str, Any], security_limit: int = 0) -> Action:
        """Create an action for the user of ``client``'s profile; ``action_new`` is emitted.

        Args:
            client: the profile's client.
            data: what frontends need to ask the user (JSON-serialisable; at least ``type``).
            security_limit: security level of the action.

        Raises:
            InvalidInput: ``data`` cannot be serialised to JSON.
        """
        try:
            serialised = json.dumps(data)
        except (TypeError, ValueError) as e:
            raise InvalidInput(f"action data cannot be serialised: {e}") from None
        action = Action(self, time_ordered_uuid(), client.profile, data, security_limit)
        self._actions[action.id] = action
        self._emit("action_new", serialised, action.id, security_limit, client.profile)
        return action

    def get(self, profile: str, action_id: str) -> Action:
        """A pending action of ``profile``.

        Raises:
            NotFound: no pending action with this id for this profile.
        """
        action = self._actions.get(action_id)
        if action is None or action.profile != profile:
            raise NotFound(f"no pending action {action_id!r} for profile {profile!r}")
        return action

    def pending(self, profile: str | None = None) -> list[Action]:
        """The pending actions (of one profile, or of all), oldest first."""
        return [a for a in self._actions.values() if profile is None or a.profile == profile]

    def launch(self, profile: str, action_id: str, data: Mapping[str, Any]) -> None:
        """Answer an action: its :attr:`Action.answer` is resolved with ``data``.

        Raises:
            NotFound: no pending action with this id for this profile (unknown, already
                answered or cancelled).
        """
        action = self.get(profile, action_id)
        self._forget(action)
        action.answer.set_result(dict(data))

    def cancel_profile(self, profile: str, reason: str = REASON_DISCONNECTED) -> None:
        """Cancel every pending action of a profile (called when it disconnects)."""
        for action in self.pending(profile):
            log.info("%s: action %s cancelled (%s)", profile, action.id, reason)
            action.cancel(reason)
