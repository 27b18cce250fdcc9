"""File transfer over a WebRTC data channel, the bytes moved by the frontend.

With the WebRTC data-channel Jingle transport the daemon only does the signalling; the
frontend owns the ``aiortc`` peer connection and moves the file bytes. The protocol with the
daemon (all dicts are JSON strings on the bridge):

Sender (:class:`~libervia.frontends.webrtc.sender.DataChannelSender`)
    create the peer connection and its channel (``"test"``, protocol ``"xmpp-jingle"``), set
    the local offer, ``file_send(..., extra={"webrtc": true, "call_data": {"sdp": offer}})``.
    The daemon answers with the chosen ``transport``: not the WebRTC one -> the peer connection
    is closed and the daemon moves the bytes itself. Then ``call_setup`` brings the answer,
    ``ice_candidates_new`` the peer's candidates (queued until the answer is set), and once the
    channel is open the file goes out as raw binary messages, with ``file_webrtc_report``
    reports ``connected``, ``progress`` (every 0.5 s at most) and ``done`` (size, sha-256).
Receiver (:class:`~libervia.frontends.webrtc.receiver.DataChannelReceiver`)
    for an ``action_new`` file offer carrying ``"webrtc": {"sdp": offer}``: set the offer,
    answer with ``action_launch(..., {"accept": true, "path": DIR, "sdp": answer})``, read the
    channel the peer opens, write exactly the announced size into the ``partial`` file the
    daemon names in ``progress_started``, then report ``done`` with the sha-256 of the bytes.

Both: ``call_ended`` closes the peer connection (``"fallback": true``: the daemon moves the
bytes itself now; keep following the progress), a failed ICE/DTLS connection is reported
``failed``, and the peer connection is closed when the daemon ends the transfer
(``progress_finished`` / ``progress_error``). :meth:`close` always releases everything.

    sender = DataChannelSender(bridge, profile, WebRTCConfig())  # .sender
    try:
        answer = await sender.send("bob@example.org/phone", "report.pdf")
        metadata = await sender.wait_ended()
    finally:
        await sender.close()
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from aiortc import RTCPeerConnection, RTCSessionDescription

from libervia.frontends.webrtc.candidates import candidates_from_signal
from libervia.frontends.webrtc.config import WebRTCConfig

log = logging.getLogger(__name__)

WEBRTC_TRANSPORT = "urn:xmpp:jingle:transports:webrtc-datachannel:1"
CHANNEL_LABEL = "test"
CHANNEL_PROTOCOL = "xmpp-jingle"
#: largest message we send, whatever the peer accepts
MAX_MESSAGE = 64 * 1024
#: aiortc/RFC 8841 default when the remote SDP has no a=max-message-size
DEFAULT_REMOTE_MAX_MESSAGE = 65536
#: back-pressure: stop sending above HIGH buffered bytes, resume when down to LOW
BUFFER_HIGH = 1024 * 1024
BUFFER_LOW = 256 * 1024
#: seconds between two "progress" reports to the daemon
REPORT_INTERVAL = 0.5
#: seconds given to pending reports and to aiortc's close in close()
CLOSE_TIMEOUT = 5.0
HASH_ALGO = "sha-256"

ProgressCallback = Callable[[int, int], None]


class WebRTCError(Exception):
    """A WebRTC transfer problem (bad signalling data, wrong state...)."""


class TransferFailed(WebRTCError):
    """The transfer failed (the text says why: ICE, size, daemon's progress_error...)."""


class Bridge(Protocol):
    """What the endpoints need of a bridge client (``BridgeClient`` or a test fake): the
    daemon's methods as attributes and ``on_signal(name, callback) -> handle.remove()``."""

    def on_signal(self, name: str, callback: Callable[..., Any]) -> Any: ...

    def __getattr__(self, name: str) -> Any: ...


def _loads(data: Any) -> Any:
    if isinstance(data, str | bytes):
        return json.loads(data) if data else {}
    return data


def remote_max_message_size(sdp: str) -> int:
    """The peer's ``a=max-message-size`` (0 = no limit), the RFC 8841 default without it."""
    match = re.search(r"^a=max-message-size:(\d+)", sdp, re.MULTILINE)
    return int(match.group(1)) if match else DEFAULT_REMOTE_MAX_MESSAGE


def chunk_size(remote_max: int) -> int:
    """Size of the messages to send: at most the peer's limit (0 = none) and MAX_MESSAGE."""
    return min(remote_max, MAX_MESSAGE) if remote_max > 0 else MAX_MESSAGE


def _consume(fut: asyncio.Future[Any]) -> None:
    """Mark a future's exception as retrieved (it is re-raised to whoever awaits it)."""
    if not fut.cancelled():
        fut.exception()


class _Endpoint:
    """What both roles share: signals, reports, the peer connection and its end."""

    role = ""

    def __init__(
        self,
        bridge: Bridge,
        profile: str,
        config: WebRTCConfig | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        """
        Args:
            bridge: the bridge client (its methods and ``on_signal``).
            profile: the profile of the transfer (signals of other profiles are ignored).
            config: ICE servers and host addresses (default: no server, aioice's addresses).
            on_progress: called with ``(position, size)`` after each message.
        """
        self.bridge = bridge
        self.profile = profile
        self.config = config or WebRTCConfig()
        self.on_progress = on_progress
        self.pc: RTCPeerConnection | None = None
        self.session_id: str | None = None
        self.progress_id: str | None = None
        self.size = 0
        #: bytes sent or received on the data channel
        self.position = 0
        #: the daemon fell back to another transport (call_ended with fallback)
        self.fallback = False
        #: why the WebRTC transfer failed, if it did
        self.error: str | None = None
        loop = asyncio.get_running_loop()
        #: the "done" report once the last byte is sent/written
        self.done: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.done.add_done_callback(_consume)
        #: ("progress_finished", metadata) or ("progress_error", text) from the daemon
        self.ended: asyncio.Future[tuple[str, Any]] = loop.create_future()
        self._handles: list[Any] = []
        self._tasks: set[asyncio.Future[Any]] = set()
        self._signals: asyncio.Queue[tuple[str, tuple[Any, ...]]] = asyncio.Queue()
        self._reports: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._session_known: asyncio.Future[None] = loop.create_future()
        self._early_progress: list[tuple[str, str, Any]] = []
        self._remote_set = False
        self._pending_candidates: list[Any] = []
        self._last_report = -REPORT_INTERVAL
        self._closed = False
        self._pc_closing: asyncio.Task[None] | None = None

    @property
    def uses_webrtc(self) -> bool:
        """Whether this endpoint moves the bytes (False once the daemon fell back to another
        transport, or when it chose another one)."""
        return not self.fallback

    # --- life cycle ----------------------------------------------------------------------

    def _spawn(self, coro: Any, what: str) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def finished(t: asyncio.Future[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("WebRTC %s failed", what, exc_info=t.exception())

        task.add_done_callback(finished)
        return task

    def _listen(self) -> None:
        """Register the signal handlers (before the call that may trigger them)."""
        names = ("call_setup", "ice_candidates_new", "call_ended")
        for name in names:
            self._handles.append(self.bridge.on_signal(name, self._signal_handler(name)))
        for name in ("progress_started", "progress_finished", "progress_error"):
            self._handles.append(self.bridge.on_signal(name, self._progress_handler(name)))
        self._spawn(self._process_signals(), "signal processing")
        self._spawn(self._send_reports(), "reports")

    def _new_pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(self.config.rtc_configuration())

        @pc.on("connectionstatechange")
        def state_changed() -> None:
            if pc is self.pc and pc.connectionState == "failed":
                self._fail("the WebRTC connection failed (ICE or DTLS)")

        self.pc = pc
        return pc

    async def _set_local(self, description: RTCSessionDescription) -> str:
        assert self.pc is not None
        with self.config.gathering():
            await self.pc.setLocalDescription(description)
        return str(self.pc.localDescription.sdp)

    def _set_session(self, session_id: str, progress_id: str) -> None:
        self.session_id = session_id
        self.progress_id = progress_id
        if not self._session_known.done():
            self._session_known.set_result(None)
        early, self._early_progress = self._early_progress, []
        for name, pid, data in early:
            if pid == progress_id:
                self._on_progress_signal(name, data)

    async def close(self) -> None:
        """Release everything: signal handlers, tasks, the peer connection, the file
        (idempotent; pending reports get CLOSE_TIMEOUT seconds to leave)."""
        if self._closed:
            return
        self._closed = True
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self.session_id is not None and not self._reports.empty():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._reports.join()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._close_pc()
        self._release()
        if not self.done.done():
            self.done.set_exception(WebRTCError(self.error or "closed before the end"))
        if not self.ended.done():
            self.ended.cancel()

    def _release(self) -> None:
        """Role-specific cleanup (files)."""

    async def _close_pc(self) -> None:
        """Close the peer connection (once; every caller waits for the same close).

        aiortc's ``close()`` runs in a task of its own, never cancelled: cancelling it midway
        may be swallowed inside aiortc, which would leave the cancelled caller running."""
        if self._pc_closing is None:
            self._pc_closing = asyncio.ensure_future(self._do_close_pc())
        await asyncio.shield(self._pc_closing)

    async def _do_close_pc(self) -> None:
        if self.pc is None:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.pc.close()
        except Exception as e:  # aiortc's close must not stop ours
            log.warning("closing the peer connection: %s", e)

    async def wait_done(self, timeout: float | None = None) -> dict[str, Any]:
        """The "done" report (every byte sent or written). Raises TransferFailed,
        WebRTCError (closed first) or TimeoutError."""
        async with asyncio.timeout(timeout):
            return await asyncio.shield(self.done)

    async def wait_ended(self, timeout: float | None = None) -> dict[str, Any]:
        """The metadata of the daemon's ``progress_finished`` (the peer confirmed). Raises
        TransferFailed with the text of ``progress_error``, or TimeoutError."""
        async with asyncio.timeout(timeout):
            name, data = await asyncio.shield(self.ended)
        if name == "progress_error":
            raise TransferFailed(str(data))
        return data if isinstance(data, dict) else {}

    # --- reports to the daemon -----------------------------------------------------------

    def _report(self, report: dict[str, Any]) -> None:
        self._reports.put_nowait(report)

    async def _send_reports(self) -> None:
        await self._session_known
        while True:
            report = await self._reports.get()
            try:
                await self.bridge.file_webrtc_report(
                    self.session_id, json.dumps(report), self.profile
                )
            except Exception as e:
                log.warning("file_webrtc_report %s failed: %s", report.get("state"), e)
            finally:
                self._reports.task_done()

    def _moved(self, count: int) -> None:
        """``count`` more bytes went through: callback and throttled progress report."""
        self.position += count
        if self.on_progress is not None:
            try:
                self.on_progress(self.position, self.size)
            except Exception:
                log.exception("progress callback failed")
        now = asyncio.get_running_loop().time()
        if now - self._last_report >= REPORT_INTERVAL:
            self._last_report = now
            self._report({"state": "progress", "position": self.position})

    def _finish(self, digest: Any) -> dict[str, Any]:
        report = {
            "state": "done",
            "size": self.position,
            "hash_algo": HASH_ALGO,
            "hash": base64.b64encode(digest.digest()).decode(),
        }
        self._report(report)
        if not self.done.done():
            self.done.set_result(report)
        return report

    def _fail(self, error: str, report: bool = True) -> None:
        """The WebRTC transfer failed: report it (once) and close the peer connection."""
        if self.error is not None or self.fallback or self.ended.done():
            return
        log.warning("WebRTC transfer %s: %s", self.session_id, error)
        self.error = error
        if report:
            self._report({"state": "failed", "error": error})
        if not self.done.done():
            self.done.set_exception(TransferFailed(error))
        self._stop()
        if not self._closed:
            self._spawn(self._close_pc(), "closing the peer connection")

    def _stop(self) -> None:
        """Role-specific: stop moving bytes."""

    # --- signals -------------------------------------------------------------------------

    def _signal_handler(self, name: str) -> Callable[..., None]:
        def handler(session_id: str, data: Any, profile: str) -> None:
            if profile == self.profile and not self._closed:
                self._signals.put_nowait((name, (session_id, data)))

        return handler

    def _progress_handler(self, name: str) -> Callable[..., None]:
        def handler(progress_id: str, data: Any, profile: str) -> None:
            if profile != self.profile or self._closed:
                return
            if self.progress_id is None:
                self._early_progress.append((name, progress_id, data))
            elif progress_id == self.progress_id:
                self._on_progress_signal(name, data)

        return handler

    def _on_progress_signal(self, name: str, data: Any) -> None:
        if name == "progress_started":
            try:
                metadata = _loads(data)
            except ValueError:
                metadata = {}
            self._started(metadata if isinstance(metadata, dict) else {})
            return
        if self.ended.done():
            return
        if name == "progress_finished":
            try:
                value = _loads(data)
            except ValueError:
                value = {"raw": data}
        else:
            value = data
            if not self.done.done():
                self.done.set_exception(TransferFailed(str(data)))
        self.ended.set_result((name, value))
        self._stop()
        if not self._closed:
            self._spawn(self._close_pc(), "closing the peer connection")

    def _started(self, metadata: dict[str, Any]) -> None:
        """progress_started of our progress id (role-specific)."""

    async def _process_signals(self) -> None:
        """call_setup, ice_candidates_new and call_ended of our session, in order."""
        await self._session_known
        while True:
            name, (session_id, data) = await self._signals.get()
            if session_id != self.session_id:
                continue
            try:
                value = _loads(data)
                if not isinstance(value, dict):
                    raise ValueError(f"{name}: a dict was expected")
                await getattr(self, f"_on_{name}")(value)
            except Exception as e:
                log.warning("WebRTC %s of %s: %s", name, session_id, e)
                if name == "call_setup":
                    self._fail(f"invalid {name}: {e}")

    async def _on_call_setup(self, data: dict[str, Any]) -> None:
        log.debug("call_setup ignored by the %s", self.role)

    async def _on_ice_candidates_new(self, data: dict[str, Any]) -> None:
        candidates = candidates_from_signal(data)
        if not self._remote_set:
            self._pending_candidates.extend(candidates)
            return
        await self._add_candidates(candidates)

    async def _add_candidates(self, candidates: Iterable[Any]) -> None:
        for candidate in candidates:
            if self.pc is None or self._pc_closing is not None:
                return
            try:
                await self.pc.addIceCandidate(candidate)
            except Exception as e:
                log.warning("remote candidate %s refused: %s", candidate, e)

    async def _remote_description(self, sdp: str, kind: str) -> None:
        assert self.pc is not None
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        self._remote_set = True
        pending, self._pending_candidates = self._pending_candidates, []
        await self._add_candidates(pending)

    async def _on_call_ended(self, data: dict[str, Any]) -> None:
        reason = str(data.get("reason") or "")
        text = str(data.get("text") or "")
        if data.get("fallback"):
            # the daemon moves the bytes itself now: only our peer connection ends
            self.fallback = True
            if not self.done.done():
                self.done.set_exception(
                    TransferFailed(f"fell back to another transport ({reason})")
                )
            self._stop()
        elif reason != "success" and not self.done.done():
            error = f"{reason}: {text}" if text else (reason or "ended")
            self.error = self.error or error
            self.done.set_exception(TransferFailed(self.error))
            self._stop()
        await self._close_pc()
