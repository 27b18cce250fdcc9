"""Progress of long operations (``host.progress``): file transfers and the like.

The code running the operation registers it, then ends it once::

    host.progress.add(client, progress_id, lambda: {"position": done, "size": total}, metadata)
    ...
    host.progress.finish(client, progress_id, {"size": ..., ...})   # or
    host.progress.fail(client, progress_id, "the peer closed the connection")

Signals (see ``bridge/api.py``): ``progress_started(id, metadata, profile)``,
``progress_finished(id, metadata, profile)``, ``progress_error(id, error, profile)``.
Frontends poll the position with ``progress_get`` / ``progress_get_all``.

A progress ends once: ending an unknown or already ended one is ignored (logged). When a
profile disconnects, its progress entries still running fail with an error saying so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from libervia.backend.core.exceptions import ConflictError, InvalidInput, NotFound
from libervia.backend.core.log import get_logger

if TYPE_CHECKING:
    from libervia.backend.core.xmpp import LiberviaClient

log = get_logger(__name__)

PositionGetter = Callable[[], dict[str, int]]


@dataclass
class Progress:
    """A running operation: its id, profile, position getter and start metadata."""

    id: str
    profile: str
    position: PositionGetter
    metadata: dict[str, Any]


def _serialise(data: dict[str, Any], what: str) -> str:
    try:
        return json.dumps(data)
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"progress {what} cannot be serialised: {e}") from None


class ProgressManager:
    """The running operations of every profile (``host.progress``)."""

    def __init__(self, host: Any) -> None:
        self.host = host
        #: profile -> progress id -> Progress (ids are unique per profile)
        self._running: dict[str, dict[str, Progress]] = {}

    def _emit(self, signal: str, *args: Any) -> None:
        self.host.bridge.emit(signal, *args)

    def add(
        self,
        client: LiberviaClient,
        progress_id: str,
        position: PositionGetter,
        metadata: dict[str, Any],
    ) -> None:
        """Register a running operation; ``progress_started`` is emitted.

        Args:
            client: the profile's client.
            progress_id: the operation's id (unique for the profile while it runs).
            position: returns ``{"position": bytes_done, "size": total}`` when called.
            metadata: sent with ``progress_started`` (JSON-serialisable).

        Raises:
            ConflictError: a running operation of the profile already has this id.
            InvalidInput: ``metadata`` cannot be serialised to JSON.
        """
        profile = client.profile
        if self.is_running(profile, progress_id):
            raise ConflictError(f"progress {progress_id!r} of {profile!r} is already running")
        serialised = _serialise(metadata, "metadata")
        progress = Progress(progress_id, profile, position, dict(metadata))
        self._running.setdefault(profile, {})[progress_id] = progress
        self._emit("progress_started", progress_id, serialised, profile)

    def _pop(self, profile: str, progress_id: str) -> Progress | None:
        running = self._running.get(profile, {})
        progress = running.pop(progress_id, None)
        if not running:
            self._running.pop(profile, None)
        return progress

    def finish(self, client: LiberviaClient, progress_id: str, metadata: dict[str, Any]) -> None:
        """The operation succeeded: ``progress_finished`` is emitted and the id forgotten.

        Ignored (and logged) if the id is not running (never added, or already ended).
        """
        if self._pop(client.profile, progress_id) is None:
            log.warning("%s: progress %r finished but not running", client.profile, progress_id)
            return
        try:
            serialised = _serialise(metadata, "metadata")
        except InvalidInput as e:
            log.error("%s: progress %r: %s", client.profile, progress_id, e)
            serialised = "{}"
        self._emit("progress_finished", progress_id, serialised, client.profile)

    def fail(self, client: LiberviaClient, progress_id: str, error: str) -> None:
        """The operation failed: ``progress_error`` is emitted and the id forgotten.

        Ignored (and logged) if the id is not running (never added, or already ended).
        """
        self._fail(client.profile, progress_id, error)

    def _fail(self, profile: str, progress_id: str, error: str) -> None:
        if self._pop(profile, progress_id) is None:
            log.info("%s: progress %r failed but not running: %s", profile, progress_id, error)
            return
        self._emit("progress_error", progress_id, error, profile)

    def is_running(self, profile: str, progress_id: str) -> bool:
        return progress_id in self._running.get(profile, {})

    def metadata(self, profile: str, progress_id: str) -> dict[str, Any]:
        """The start metadata of a running operation.

        Raises:
            NotFound: no running operation with this id for this profile.
        """
        return self._find(profile, progress_id).metadata

    def _find(self, profile: str, progress_id: str) -> Progress:
        progress = self._running.get(profile, {}).get(progress_id)
        if progress is None:
            raise NotFound(f"no running progress {progress_id!r} for profile {profile!r}")
        return progress

    def get(self, profile: str, progress_id: str) -> dict[str, int]:
        """The position of a running operation (``{"position": N, "size": N}``).

        Raises:
            NotFound: no running operation with this id for this profile (unknown, or
                already finished or failed).
        """
        return dict(self._find(profile, progress_id).position())

    def get_all(self, profile: str | None = None) -> dict[str, dict[str, dict[str, int]]]:
        """Positions of the running operations: profile -> progress id -> position.

        With a profile, that profile only (present, possibly empty); with None, every profile
        that has running operations.
        """
        profiles = [profile] if profile is not None else list(self._running)
        result: dict[str, dict[str, dict[str, int]]] = {}
        for name in profiles:
            positions = result[name] = {}
            for progress_id, progress in self._running.get(name, {}).items():
                try:
                    positions[progress_id] = dict(progress.position())
                except Exception:
                    # one broken getter must not hide the other operations
                    log.exception("%s: position of progress %r", name, progress_id)
        return result

    def fail_profile(self, profile: str) -> None:
        """Fail every running operation of a profile that disconnected."""
        for progress_id in list(self._running.get(profile, {})):
            self._fail(
                profile,
                progress_id,
                f"profile {profile!r} was disconnected before the operation finished",
            )
