"""Reconnection: a profile whose connection was lost reconnects by itself.

After a loss the user did not ask for (server restart, network drop, keepalive timeout), the
profile reconnects with exponential backoff and jitter on the host's clock: the first attempt
after ``reconnect_delay`` seconds, each next one twice later, up to ``reconnect_delay_max``,
each delay varied by ±``reconnect_jitter`` (a fraction) so that many clients of a restarted
server do not come back at the same instant. A session that stayed up ``reconnect_stable``
seconds resets the backoff. The frontends see the usual ``disconnected`` then ``connected``
signals.

A profile the user disconnected (bridge ``disconnect``) stays disconnected, and a pending
reconnection of that profile is cancelled; stopping the backend cancels them all. A failed
attempt (server down, timeout) schedules the next one; a refusal that retrying cannot fix
(wrong password, profile without address, deleted profile) stops retrying: it is logged and
reported by the ``reconnect_failed`` signal (profile, error code, message).

Options (``libervia.conf``, section ``[DEFAULT]``): ``reconnect_delay`` (1 s),
``reconnect_delay_max`` (300 s), ``reconnect_jitter`` (0.2), ``reconnect_stable`` (120 s);
``reconnect = false`` disables it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from libervia.backend.core.aio import background
from libervia.backend.core.exceptions import (
    AuthenticationFailed,
    ConfigError,
    InvalidInput,
    LiberviaError,
    PasswordError,
    ProfileUnknownError,
)
from libervia.backend.core.log import get_logger

log = get_logger(__name__)

PLUGIN_INFO = {
    "name": "Reconnection",
    "import_name": "RECONNECT",
    "type": "misc",
    "protocols": [],
    "dependencies": [],
    "main": "Reconnect",
    "handler": False,
    "description": "Reconnect lost profiles with exponential backoff and jitter",
}

#: errors that retrying cannot fix
FATAL_ERRORS = (AuthenticationFailed, PasswordError, InvalidInput, ProfileUnknownError)


@dataclass(frozen=True)
class Backoff:
    """The delay before each attempt: ``initial * 2**attempt`` capped at ``maximum``, ±jitter."""

    initial: float = 1.0
    maximum: float = 300.0
    jitter: float = 0.2
    stable: float = 120.0

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before attempt number ``attempt`` (0 for the first)."""
        base = min(self.maximum, self.initial * 2 ** min(attempt, 64))
        return max(0.0, base * (1 + self.jitter * (2 * rand() - 1)))

    @classmethod
    def from_config(cls, config: Any) -> Backoff:
        """Read the ``reconnect_*`` options.

        Raises:
            ConfigError: an option is not a number or out of range.
        """

        def number(name: str, default: float) -> float:
            return float(config.get_float(name, default, minimum=0))

        backoff = cls(
            initial=number("reconnect_delay", cls.initial),
            maximum=number("reconnect_delay_max", cls.maximum),
            jitter=number("reconnect_jitter", cls.jitter),
            stable=number("reconnect_stable", cls.stable),
        )
        if backoff.jitter >= 1:
            raise ConfigError("option reconnect_jitter must be below 1")
        return backoff


@dataclass
class _Profile:
    """Reconnection state of one profile."""

    attempt: int = 0
    connected_at: float | None = None
    timer: Any = None
    running: bool = False
    cancelled: bool = False
    history: list[float] = field(default_factory=list)

    def cancel(self) -> None:
        self.cancelled = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None


class Reconnect:
    def __init__(self, host: Any, rand: Callable[[], float] = random.random) -> None:
        self.host = host
        self.enabled = host.config.get_bool("reconnect", True)
        self.backoff = Backoff.from_config(host.config)
        self._rand = rand
        self._profiles: dict[str, _Profile] = {}
        host.trigger.add("disconnect_requested", self._disconnect_requested)
        host.trigger.add("backend_stopping", self._stopping)
        host.bridge.add_signal(
            "reconnect_failed",
            [
                ("profile", "s", "the profile that stays disconnected"),
                ("code", "s", "error code (e.g. AuthenticationFailed)"),
                ("message", "s", "what went wrong and what to do"),
            ],
            doc="A lost profile stopped reconnecting: retrying cannot fix this error.",
        )

    @property
    def _clock(self) -> Any:
        return self.host.reactor

    def pending(self, profile: str) -> bool:
        """True while a reconnection of ``profile`` is scheduled or running."""
        state = self._profiles.get(profile)
        return (
            state is not None
            and not state.cancelled
            and (state.running or (state.timer is not None and state.timer.active()))
        )

    # --- profile hooks ------------------------------------------------------------------------

    def profile_connected(self, client: Any) -> None:
        state = self._profiles.setdefault(client.profile, _Profile())
        state.cancelled = False
        state.connected_at = self._clock.seconds()

    def profile_disconnected(self, client: Any) -> None:
        profile = client.profile
        if client.close_requested or client.lost_reason is None or self.host.is_stopping:
            self._forget(profile)
            return
        if not self.enabled:
            return
        state = self._profiles.setdefault(profile, _Profile())
        now = self._clock.seconds()
        if state.connected_at is not None and now - state.connected_at >= self.backoff.stable:
            state.attempt = 0
        state.connected_at = None
        state.cancelled = False
        log.info(
            "%s: connection lost (%s): reconnecting",
            profile,
            client.lost_reason.getErrorMessage(),
        )
        self._schedule(profile, state)

    # --- triggers -----------------------------------------------------------------------------

    def _disconnect_requested(self, profile: str) -> None:
        if self.pending(profile):
            log.info("%s: disconnected by the user: reconnection cancelled", profile)
        self._forget(profile)

    def _stopping(self) -> None:
        for profile in list(self._profiles):
            self._forget(profile)

    def _forget(self, profile: str) -> None:
        state = self._profiles.pop(profile, None)
        if state is not None:
            state.cancel()

    # --- attempts -----------------------------------------------------------------------------

    def _schedule(self, profile: str, state: _Profile) -> None:
        delay = self.backoff.delay(state.attempt, self._rand)
        state.attempt += 1
        state.history.append(delay)
        log.info("%s: reconnection attempt %d in %.1f s", profile, state.attempt, delay)
        state.timer = self._clock.callLater(delay, self._attempt, profile, state)

    def _attempt(self, profile: str, state: _Profile) -> None:
        state.timer = None
        if state.cancelled or self._profiles.get(profile) is not state:
            return
        state.running = True
        background(self._reconnect(profile, state), f"reconnect {profile}")

    async def _reconnect(self, profile: str, state: _Profile) -> None:
        try:
            await self.host.connect(profile)
        except FATAL_ERRORS as e:
            state.running = False
            self._forget(profile)
            log.error("%s: reconnection abandoned: %s", profile, e)
            self.host.bridge.emit("reconnect_failed", profile, str(e.code), str(e))
            return
        except Exception as e:
            state.running = False
            if state.cancelled or self.host.is_stopping:
                return
            if isinstance(e, LiberviaError):
                log.info("%s: reconnection attempt %d failed: %s", profile, state.attempt, e)
            else:
                log.exception("%s: reconnection attempt %d failed", profile, state.attempt)
            self._schedule(profile, state)
            return
        state.running = False
        if state.cancelled and not self.host.is_stopping:
            # the user disconnected the profile while it was connecting: obey
            await self.host.disconnect(profile)
            return
        log.info("%s: reconnected after %d attempt(s)", profile, state.attempt)
