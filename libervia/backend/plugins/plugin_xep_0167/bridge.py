"""The ``call_*`` bridge methods and the ``call_info`` signal (thin adapters)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from libervia.backend.core.exceptions import InvalidInput
from libervia.backend.core.xmpp import parse_jid_arg

if TYPE_CHECKING:
    from libervia.backend.plugins.plugin_xep_0167 import XEP_0167


def _object(value: str, what: str) -> dict[str, Any]:
    """A serialised dict ("" is an empty one)."""
    if not value:
        return {}
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a JSON string")
    try:
        data = json.loads(value)
    except ValueError as e:
        raise InvalidInput(f"{what} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return data


def register_bridge(plugin: XEP_0167, bridge: Any) -> None:
    """Declare ``call_start``, ``call_answer_sdp``, ``call_end``, ``call_info`` and the
    ``call_info`` signal."""
    host = plugin.host

    async def call_start(entity: str, call_data_s: str, profile_key: str) -> str:
        peer = parse_jid_arg(entity, "entity")
        call_data = _object(call_data_s, "call_data")
        client = await host.client_of(profile_key)
        return await plugin.call_start(client, peer, call_data)

    async def call_answer_sdp(session_id: str, answer_sdp: str, profile_key: str) -> str:
        client = await host.client_of(profile_key)
        plugin.answer_sdp(client, session_id, answer_sdp)
        return "{}"

    async def call_end(session_id: str, data_s: str, profile_key: str) -> str:
        data = _object(data_s, "data")
        client = await host.client_of(profile_key)
        await plugin.call_end(client, session_id, data)
        return "{}"

    async def call_info(session_id: str, info_type: str, extra_s: str, profile_key: str) -> str:
        extra = _object(extra_s, "extra")
        client = await host.client_of(profile_key)
        await plugin.call_info(client, session_id, info_type, extra)
        return "{}"

    profile = ("profile_key", "s")
    session_arg = ("session_id", "s", "the Jingle session id of the call")
    add: Callable[..., None] = bridge.add_method
    add(
        "call_start",
        call_start,
        args=[
            (
                "entity",
                "s",
                "who to call: a bare JID rings every device of the callee (XEP-0353 Jingle "
                "Message Initiation), a full JID that device only",
            ),
            (
                "call_data",
                "s",
                'serialised {"sdp": the frontend\'s offer (audio and video m= lines only), '
                '"jmi"?: false to call a bare JID\'s best available device directly}',
            ),
            profile,
        ],
        returns="s",
        doc="Start an audio/video call (XEP-0167); returns the session id: at once when the "
        "call is proposed to every device of a bare JID (the devices that ring come as the "
        "call_info signal, a rejection or no answer as call_ended), else once the peer "
        "acknowledged the offer. Then: ice_candidates_add, call_setup, call_ended.",
    )
    add(
        "call_answer_sdp",
        call_answer_sdp,
        args=[session_arg, ("answer_sdp", "s", "the frontend's answer SDP"), profile],
        returns="s",
        doc='The answer to an incoming call accepted with action_launch {"accept": true} '
        "without sdp: the call is then accepted (session-accept).",
    )
    add(
        "call_end",
        call_end,
        args=[
            session_arg,
            (
                "data",
                "s",
                'serialised {"reason"?: Jingle reason, "text"?: str} (default reason: success '
                "for an active call, decline for an unanswered incoming one, cancel for an "
                "unanswered outgoing one)",
            ),
            profile,
        ],
        returns="s",
        doc="End a call (session-terminate).",
    )
    add(
        "call_info",
        call_info,
        args=[
            session_arg,
            ("info_type", "s", "active, hold, unhold, mute, unmute or ringing"),
            (
                "extra",
                "s",
                'serialised {"name"?: content name, "creator"?: "initiator" | "responder"} '
                "(mute/unmute only; no name: every content)",
            ),
            profile,
        ],
        returns="s",
        doc="Tell the peer about the call's state (XEP-0167 session-info).",
    )
    bridge.add_signal(
        "call_info",
        [
            ("session_id", "s"),
            ("info_type", "s", "active, hold, unhold, mute, unmute or ringing"),
            (
                "extra",
                "s",
                'serialised {"creator"?: str, "name"?: str} (mute/unmute: no name is every '
                'content); {"from_jid": device} for ringing during a call proposed to every '
                "device (XEP-0353)",
            ),
            ("profile", "s"),
        ],
        doc="The peer's state in a call (XEP-0167 session-info, or XEP-0353 ringing of a "
        "device of the callee).",
    )
