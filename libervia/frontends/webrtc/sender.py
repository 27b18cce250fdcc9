"""The sending side of a WebRTC data-channel file transfer (see
:mod:`~libervia.frontends.webrtc.endpoint` for the protocol)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any, BinaryIO

from aiortc import RTCDataChannel

from libervia.frontends.webrtc.config import WebRTCConfig
from libervia.frontends.webrtc.endpoint import (
    BUFFER_HIGH,
    BUFFER_LOW,
    CHANNEL_LABEL,
    CHANNEL_PROTOCOL,
    WEBRTC_TRANSPORT,
    Bridge,
    ProgressCallback,
    TransferFailed,
    WebRTCError,
    _consume,
    _Endpoint,
    _loads,
    chunk_size,
    remote_max_message_size,
)


class DataChannelSender(_Endpoint):
    """Offers a file and, if the daemon chooses the WebRTC transport, sends its bytes."""

    role = "sender"

    def __init__(
        self,
        bridge: Bridge,
        profile: str,
        config: WebRTCConfig | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        super().__init__(bridge, profile, config, on_progress)
        self.channel: RTCDataChannel | None = None
        #: the transport the daemon chose (its namespace)
        self.transport = ""
        self._opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._opened.add_done_callback(_consume)
        self._wake = asyncio.Event()
        self._answer_sdp = ""

    @property
    def uses_webrtc(self) -> bool:
        """Whether the daemon chose the WebRTC transport (we send the bytes)."""
        return self.transport == WEBRTC_TRANSPORT and not self.fallback

    async def send(
        self,
        peer_jid: str,
        path: str | Path,
        name: str = "",
        desc: str = "",
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Offer ``path`` to ``peer_jid`` with ``file_send`` and return its answer
        (``progress``, ``session_id``, ``transport``); the bytes then go out in the
        background if the WebRTC transport was chosen. ``extra``: more ``file_send`` options
        (``"transport"`` defaults to ``"auto"``). Raises the bridge's errors, OSError."""
        path = Path(path)
        self.size = path.stat().st_size
        self._listen()
        pc = self._new_pc()
        channel = pc.createDataChannel(CHANNEL_LABEL, protocol=CHANNEL_PROTOCOL)
        self.channel = channel

        @channel.on("open")
        def opened() -> None:
            if not self._opened.done():
                self._opened.set_result(None)

        @channel.on("close")
        def closed() -> None:
            if not self._opened.done():
                self._opened.set_exception(TransferFailed("the data channel closed"))
            self._wake.set()

        channel.on("bufferedamountlow", self._wake.set)
        offer = await self._set_local(await pc.createOffer())
        options = {
            "transport": "auto",
            **(extra or {}),
            "webrtc": True,
            "call_data": {"sdp": offer},
        }
        answer = _loads(
            await self.bridge.file_send(
                peer_jid, str(path), name or path.name, desc, json.dumps(options), self.profile
            )
        )
        if not isinstance(answer, dict):
            raise WebRTCError(f"unexpected file_send answer: {answer!r}")
        self.transport = str(answer.get("transport") or "")
        self._set_session(str(answer.get("session_id") or ""), str(answer.get("progress") or ""))
        if self.transport == WEBRTC_TRANSPORT:
            self._spawn(self._stream(path), "sending")
        else:
            await self._close_pc()
        return answer

    async def _on_call_setup(self, data: dict[str, Any]) -> None:
        sdp = data.get("sdp")
        if not isinstance(sdp, str) or not sdp:
            raise ValueError("no answer SDP")
        if self._remote_set or self.pc is None or self._pc_closing is not None:
            return
        self._answer_sdp = sdp
        await self._remote_description(sdp, "answer")

    def _message_size(self) -> int:
        remote = remote_max_message_size(self._answer_sdp)
        sctp = self.pc.sctp if self.pc is not None else None
        negotiated = getattr(sctp, "_remote_max_message_size", None)  # aiortc's private value
        if isinstance(negotiated, int) and negotiated > 0:
            remote = min(remote, negotiated) if remote > 0 else negotiated
        return chunk_size(remote)

    def _stop(self) -> None:
        self._wake.set()

    def _stopped(self) -> bool:
        return (
            self.error is not None
            or self.fallback
            or self.ended.done()
            or self.channel is None
            or self.channel.readyState != "open"
        )

    async def _stream(self, path: Path) -> None:
        try:
            await self._opened
        except TransferFailed as e:
            self._fail(str(e))
            return
        assert self.channel is not None
        channel = self.channel
        self._report({"state": "connected"})
        channel.bufferedAmountLowThreshold = BUFFER_LOW
        size = self._message_size()
        digest = hashlib.sha256()
        try:
            f: BinaryIO = await asyncio.to_thread(open, path, "rb")
        except OSError as e:
            self._fail(f"cannot read {path}: {e}")
            return
        try:
            while True:
                while channel.bufferedAmount > BUFFER_HIGH and not self._stopped():
                    self._wake.clear()
                    await self._wake.wait()
                if self._stopped():
                    return
                chunk = await asyncio.to_thread(f.read, size)
                if not chunk:
                    break
                if self._stopped():
                    return
                channel.send(chunk)
                digest.update(chunk)
                self._moved(len(chunk))
        except OSError as e:
            self._fail(f"cannot read {path}: {e}")
            return
        finally:
            await asyncio.to_thread(f.close)
        self._finish(digest)
