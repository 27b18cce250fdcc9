"""The receiving side of a WebRTC data-channel file transfer (see
:mod:`~libervia.frontends.webrtc.endpoint` for the protocol)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from typing import Any, BinaryIO

from aiortc import RTCDataChannel

from libervia.frontends.webrtc.config import WebRTCConfig
from libervia.frontends.webrtc.endpoint import (
    Bridge,
    ProgressCallback,
    WebRTCError,
    _Endpoint,
)


class DataChannelReceiver(_Endpoint):
    """Accepts a file offered over the WebRTC data channel and writes its bytes."""

    role = "receiver"

    def __init__(
        self,
        bridge: Bridge,
        profile: str,
        config: WebRTCConfig | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        super().__init__(bridge, profile, config, on_progress)
        self.channel: RTCDataChannel | None = None
        #: final path and partial file named by the daemon (progress_started)
        self.path: str | None = None
        self.partial: str | None = None
        #: the bytes, when the daemon named no partial file (a frontend without a path)
        self.data: io.BytesIO | None = None
        self._target: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._file: BinaryIO | None = None
        self._complete = False

    async def accept(
        self,
        action_id: str,
        offer: dict[str, Any],
        path: str = "",
        overwrite: bool = False,
        answer: dict[str, Any] | None = None,
    ) -> None:
        """Accept the file offer ``offer`` (the ``action_new`` data, with ``"webrtc"``) of
        ``action_id``: answer with ``action_launch``, then receive in the background.

        Args:
            path: the directory to save in ("": the daemon's download directory).
            overwrite: replace an existing file of that name.
            answer: more keys for the ``action_launch`` answer.
        Raises:
            WebRTCError: the offer has no WebRTC SDP or no size; the bridge's errors.
        """
        webrtc = offer.get("webrtc")
        sdp = webrtc.get("sdp") if isinstance(webrtc, dict) else None
        if not isinstance(sdp, str) or not sdp:
            raise WebRTCError("the offer is not a WebRTC data-channel offer")
        info = offer.get("file") if isinstance(offer.get("file"), dict) else {}
        size = info.get("size")
        if isinstance(size, bool) or not isinstance(size, int | str) or not str(size).isdigit():
            raise WebRTCError(f"the offer has no valid size: {size!r}")
        self.size = int(size)
        self._listen()
        self._set_session(str(offer.get("session_id") or ""), str(offer.get("progress_id") or ""))
        pc = self._new_pc()
        pc.on("datachannel", self._on_datachannel)
        try:
            await self._remote_description(sdp, "offer")
            local = await self._set_local(await pc.createAnswer())
        except Exception as e:  # aiortc: ValueError, InvalidStateError... on a bad offer
            raise WebRTCError(f"unusable WebRTC offer: {e}") from e
        data = {**(answer or {}), "accept": True, "path": path, "sdp": local}
        if overwrite:
            data["overwrite"] = True
        self._spawn(self._write(), "writing")
        await self.bridge.action_launch(action_id, json.dumps(data), self.profile)

    def _started(self, metadata: dict[str, Any]) -> None:
        if self._target.done():
            return
        self.path = metadata.get("path") or None
        self.partial = metadata.get("partial") or None
        self._target.set_result(self.partial)

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        # the last channel the peer announces is the one it sends on
        self.channel = channel
        channel.on("message", lambda message: self._on_message(channel, message))
        self._report({"state": "connected"})
        if self.size == 0 and not self._complete:
            self._complete = True
            self._chunks.put_nowait(None)

    def _on_message(self, channel: RTCDataChannel, message: bytes | str) -> None:
        if channel is not self.channel or self.error is not None or self.fallback:
            return
        data = message.encode() if isinstance(message, str) else message
        if self._complete or self.position + len(data) > self.size:
            self._fail(f"more data than the announced {self.size} bytes")
            return
        self._chunks.put_nowait(data)
        self._moved(len(data))
        if self.position == self.size:
            self._complete = True
            self._chunks.put_nowait(None)

    def _stop(self) -> None:
        self._chunks.put_nowait(None)

    async def _write(self) -> None:
        target = await self._target
        if target is None:
            self.data = io.BytesIO()
        digest = hashlib.sha256()
        try:
            while True:
                chunk = await self._chunks.get()
                if chunk is None:
                    break
                if self._file is None and self.data is None:
                    assert target is not None
                    self._file = await asyncio.to_thread(open, target, "wb")
                digest.update(chunk)
                if self.data is not None:
                    self.data.write(chunk)
                else:
                    assert self._file is not None
                    await asyncio.to_thread(self._file.write, chunk)
            if not self._complete or self.error is not None or self.fallback:
                self._release()  # the daemon may write the file itself now (fallback)
                return
            if self._file is None and self.data is None:  # empty file
                assert target is not None
                self._file = await asyncio.to_thread(open, target, "wb")
            if self._file is not None:
                f, self._file = self._file, None
                await asyncio.to_thread(f.close)
        except OSError as e:
            self._fail(f"cannot write {target}: {e}")
            return
        self._finish(digest)

    def _release(self) -> None:
        if self._file is not None:
            f, self._file = self._file, None
            f.close()
