"""The ``file_send`` and ``file_jingle_request`` bridge methods (thin adapters)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from libervia.backend.core.exceptions import InvalidInput
from libervia.backend.core.xmpp import parse_jid_arg

if TYPE_CHECKING:
    from libervia.backend.plugins.plugin_xep_0234 import XEP_0234


def _extra(value: str) -> dict[str, Any]:
    if not value:
        return {"transport": "auto", "jmi": False, "call_data": None, "file_data": None}
    try:
        data = json.loads(value)
    except ValueError as e:
        raise InvalidInput(f"extra is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise InvalidInput("extra must be a JSON object")
    unknown = set(data) - {"transport", "jmi", "webrtc", "call_data", "file_data"}
    if unknown:
        raise InvalidInput(f"unknown extra keys {sorted(unknown)}")
    transport = data.get("transport", "auto")
    if not isinstance(transport, str):
        raise InvalidInput("transport must be a string")
    jmi = data.get("jmi", False)
    webrtc = data.get("webrtc", False)
    if not isinstance(jmi, bool) or not isinstance(webrtc, bool):
        raise InvalidInput("jmi and webrtc must be booleans")
    call_data = data.get("call_data")
    file_data = data.get("file_data")
    if webrtc and not isinstance(call_data, dict):
        raise InvalidInput('webrtc needs call_data: {"sdp": the frontend\'s offer}')
    if file_data is not None and not isinstance(file_data, dict):
        raise InvalidInput("file_data must be an object")
    return {
        "transport": transport,
        "jmi": jmi,
        "call_data": call_data if webrtc else None,
        "file_data": file_data,
    }


def register_bridge(plugin: XEP_0234, bridge: Any) -> None:
    """Declare ``file_send`` and ``file_jingle_request``."""
    host = plugin.host

    async def file_send(
        peer_jid: str, filepath: str, name: str, file_desc: str, extra: str, profile_key: str
    ) -> str:
        peer = parse_jid_arg(peer_jid, "peer JID")
        options = _extra(extra)
        if not filepath:
            raise InvalidInput("a file path is required")
        client = await host.client_of(profile_key)
        result = await plugin.file_send(
            client,
            peer,
            Path(filepath),
            name or None,
            file_desc,
            options["transport"],
            jmi=options["jmi"],
            call_data=options["call_data"],
            file_data=options["file_data"],
        )
        return json.dumps(result)

    async def file_jingle_request(
        peer_jid: str,
        filepath: str,
        name: str,
        file_hash: str,
        hash_algo: str,
        extra: str,
        profile_key: str,
    ) -> str:
        peer = parse_jid_arg(peer_jid, "peer JID")
        options = _extra(extra)
        client = await host.client_of(profile_key)
        result = await plugin.file_jingle_request(
            client,
            peer,
            Path(filepath),
            name or None,
            file_hash,
            hash_algo,
            options["transport"],
        )
        return json.dumps(result)

    profile = ("profile_key", "s")
    extra_arg = (
        "extra",
        "s",
        'serialised dict: transport ("auto", "ibb" or "s5b"); jmi (file_send: true to propose '
        "the file to every device of the peer first, XEP-0353, and send it to the one that "
        "accepts; between Libervia clients: others ignore such proposals); file_send only: "
        'webrtc (true) with call_data {"sdp": offer} when the frontend moves the bytes over a '
        'WebRTC data channel (XEP-0343), file_data {"size", "media_type", "hash" (sha-256, '
        "base64)} when the file is not on the daemon's machine",
    )
    add: Callable[..., None] = bridge.add_method
    add(
        "file_send",
        file_send,
        args=[
            ("peer_jid", "s", "the receiver (a bare JID: its best available device)"),
            ("filepath", "s", "the local file to send"),
            ("name", "s", '"": the file\'s own name'),
            ("file_desc", "s", "a description of the file"),
            extra_arg,
            profile,
        ],
        returns="s",
        doc="Offer a file over Jingle (XEP-0234); returns serialised {progress, session_id, "
        "transport (the namespace of the transport offered)}.",
    )
    add(
        "file_jingle_request",
        file_jingle_request,
        args=[
            ("peer_jid", "s", "the entity having the file"),
            ("filepath", "s", "where to save it: a directory, or the file to create"),
            ("name", "s", "the file's name"),
            ("file_hash", "s", "its hash (base64), if known"),
            ("hash_algo", "s", "the algorithm of file_hash"),
            extra_arg,
            profile,
        ],
        returns="s",
        doc="Ask a peer for one of its files (XEP-0234 request), selected by name and/or "
        "hash; returns serialised {progress, session_id}.",
    )
