"""Trigger points: let plugins step into a flow, by priority, and stop it if they handle it.

A flow (sending a message, getting pubsub items...) calls a *point* by name with its
arguments. Every callback registered on that point runs, highest priority first; a callback
returning ``False`` stops the others and tells the flow to skip its normal work (that is how the
pubsub cache answers from the database instead of the network). Returning anything else
(including None) lets the flow go on.

A callback that raises is logged and skipped: a buggy plugin never breaks the flow of others.

Known points (name: arguments, emitter):

``message_send``: ``client, data``, before a message is sent (core);
``message_received``: ``client, element, data``, for each incoming message (core);
``disconnect_requested``: ``profile``, when the user disconnects a profile, connected or not
(core);
``client_lost``: ``client, reason``, when an established stream ended, before the profile is
cleaned up; False takes the loss over (core);
``backend_stopping``: no argument, when the backend starts stopping (core);
``XEP-0060_items``: ``client, request``, before a pubsub items request; a callback answering
it sets ``request.result`` and returns False (XEP-0060 plugin; the pubsub cache does);
``XEP-0060_event``: ``client, event``, for each pubsub notification, in arrival order
(XEP-0060 plugin; the pubsub cache follows its nodes there).

Plugins document the points they emit in their docstring and add them here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from libervia.backend.core.exceptions import InvalidInput
from libervia.backend.core.log import get_logger

log = get_logger(__name__)

TriggerCallback = Callable[..., Any]

#: default priority; higher runs first
DEFAULT_PRIORITY = 0
MIN_PRIORITY = -1000
MAX_PRIORITY = 1000


@dataclass(order=True)
class _Registration:
    sort_key: tuple[int, int]
    callback: TriggerCallback = field(compare=False)


class TriggerManager:
    """Registry of trigger callbacks, by point name."""

    def __init__(self) -> None:
        self._points: dict[str, list[_Registration]] = {}
        self._counter = 0

    def add(self, point: str, callback: TriggerCallback, priority: int = DEFAULT_PRIORITY) -> None:
        """Register ``callback`` on ``point``.

        Callbacks of equal priority run in registration order.

        Raises:
            InvalidInput: priority out of [MIN_PRIORITY, MAX_PRIORITY], or the callback is
                already registered on this point.
        """
        if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
            raise InvalidInput(
                f"trigger priority must be between {MIN_PRIORITY} and {MAX_PRIORITY}"
            )
        registrations = self._points.setdefault(point, [])
        if any(r.callback == callback for r in registrations):
            raise InvalidInput(f"{callback!r} is already registered on trigger point {point!r}")
        self._counter += 1
        registrations.append(_Registration((-priority, self._counter), callback))
        registrations.sort()

    def remove(self, point: str, callback: TriggerCallback) -> None:
        """Unregister ``callback`` from ``point`` (nothing happens if it was not there)."""
        registrations = self._points.get(point, [])
        registrations[:] = [r for r in registrations if r.callback != callback]
        if not registrations:
            self._points.pop(point, None)

    def remove_all(self, callback_owner: object) -> None:
        """Unregister every bound method of ``callback_owner`` (a plugin being unloaded)."""
        for point in list(self._points):
            for registration in list(self._points.get(point, [])):
                if getattr(registration.callback, "__self__", None) is callback_owner:
                    self.remove(point, registration.callback)

    def callbacks(self, point: str) -> list[TriggerCallback]:
        """Callbacks of a point, in the order they run."""
        return [r.callback for r in self._points.get(point, [])]

    def point(self, point: str, *args: Any, **kwargs: Any) -> bool:
        """Run the synchronous callbacks of ``point``.

        Returns:
            False when a callback returned False (the flow must stop), else True.

        Raises:
            InvalidInput: a callback is a coroutine function (use :meth:`async_point`).
        """
        for callback in self.callbacks(point):
            if inspect.iscoroutinefunction(callback):
                raise InvalidInput(
                    f"trigger point {point!r} is synchronous but {callback!r} is async"
                )
            try:
                result = callback(*args, **kwargs)
            except Exception:
                log.exception("trigger %r: callback %r failed (skipped)", point, callback)
                continue
            if result is False:
                return False
        return True

    async def async_point(self, point: str, *args: Any, **kwargs: Any) -> bool:
        """Run the callbacks of ``point``, awaiting those that return awaitables.

        Returns:
            False when a callback returned False (the flow must stop), else True.
        """
        for callback in self.callbacks(point):
            try:
                result = callback(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
            except Exception:
                log.exception("trigger %r: callback %r failed (skipped)", point, callback)
                continue
            if result is False:
                return False
        return True
