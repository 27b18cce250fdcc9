"""ICE candidates between the bridge's dicts, aiortc's objects and SDP.

The daemon relays candidates with the ``ice_candidates_new`` signal as
``{"<media name>": {"ufrag": str, "pwd": str, "candidates": [cand, ...]}}`` where a candidate
is ``{"foundation": str, "component_id": int, "transport": "udp", "priority": int,
"address": str, "port": int, "type": "host"|"srflx"|"prflx"|"relay", "rel_addr": str,
"rel_port": int, "generation": int, "id": str}`` (the last four optional). aiortc wants an
``RTCIceCandidate`` with ``sdpMid`` set for ``addIceCandidate``, and puts its own candidates
only in the SDP of its local description (no trickle).
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCIceCandidate
from aiortc.sdp import candidate_from_sdp, candidate_to_sdp

CANDIDATE_TYPES = ("host", "srflx", "prflx", "relay")
REQUIRED = ("foundation", "component_id", "transport", "priority", "address", "port", "type")


def _int(cand: dict[str, Any], key: str) -> int:
    value = cand[key]
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"candidate {key} must be an integer, not {value!r}")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"candidate {key} must be an integer, not {value!r}") from None


def _token(cand: dict[str, Any], key: str) -> str:
    value = str(cand[key])
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"invalid candidate {key}: {value!r}")
    return value


def candidate_sdp_value(cand: dict[str, Any]) -> str:
    """The value of an ``a=candidate:`` SDP attribute (without ``candidate:``) for a bridge
    candidate dict. Raises ValueError for a malformed dict."""
    if not isinstance(cand, dict):
        raise ValueError(f"a candidate must be a dict, not {type(cand).__name__}")
    missing = [key for key in REQUIRED if key not in cand]
    if missing:
        raise ValueError(f"candidate without {', '.join(missing)}")
    ctype = _token(cand, "type").lower()
    if ctype not in CANDIDATE_TYPES:
        raise ValueError(f"unknown candidate type {ctype!r}")
    value = (
        f"{_token(cand, 'foundation')} {_int(cand, 'component_id')} "
        f"{_token(cand, 'transport').lower()} {_int(cand, 'priority')} "
        f"{_token(cand, 'address')} {_int(cand, 'port')} typ {ctype}"
    )
    if cand.get("rel_addr"):
        value += f" raddr {_token(cand, 'rel_addr')}"
    if cand.get("rel_port") not in (None, ""):
        value += f" rport {_int(cand, 'rel_port')}"
    if cand.get("generation") not in (None, ""):
        value += f" generation {_int(cand, 'generation')}"
    return value


def candidate_from_dict(cand: dict[str, Any], mid: str) -> RTCIceCandidate:
    """An aiortc candidate for ``addIceCandidate`` (``sdpMid=mid``, ``sdpMLineIndex=0``).

    Raises ValueError for a malformed dict."""
    candidate = candidate_from_sdp(candidate_sdp_value(cand))
    candidate.sdpMid = mid
    candidate.sdpMLineIndex = 0
    return candidate


def candidate_to_dict(candidate: RTCIceCandidate) -> dict[str, Any]:
    """A bridge candidate dict for an aiortc candidate (no ``generation``/``id``: aiortc
    has none; the daemon adds them on the wire)."""
    cand: dict[str, Any] = {
        "foundation": candidate.foundation,
        "component_id": int(candidate.component),
        "transport": candidate.protocol.lower(),
        "priority": int(candidate.priority),
        "address": candidate.ip,
        "port": int(candidate.port),
        "type": candidate.type,
    }
    if candidate.relatedAddress is not None:
        cand["rel_addr"] = candidate.relatedAddress
    if candidate.relatedPort is not None:
        cand["rel_port"] = int(candidate.relatedPort)
    return cand


def candidates_from_signal(data: dict[str, Any]) -> list[RTCIceCandidate]:
    """Every candidate of an ``ice_candidates_new`` dict as aiortc candidates.

    Raises ValueError for a malformed dict."""
    if not isinstance(data, dict):
        raise ValueError("ice_candidates_new data must be a dict")
    found = []
    for mid, media in data.items():
        if not isinstance(media, dict) or not isinstance(media.get("candidates", []), list):
            raise ValueError(f"invalid candidates for media {mid!r}")
        for cand in media.get("candidates", []):
            found.append(candidate_from_dict(cand, str(mid)))
    return found


def candidates_from_sdp(sdp: str) -> dict[str, dict[str, Any]]:
    """The candidates of an SDP (e.g. aiortc's local description) in the shape of the
    ``ice_candidates_new`` signal, by media ``a=mid`` (the media index when there is none)."""
    result: dict[str, dict[str, Any]] = {}
    session: dict[str, str] = {}
    current: dict[str, Any] | None = None
    index = -1
    for line in sdp.splitlines():
        line = line.strip()
        if line.startswith("m="):
            index += 1
            current = {"mid": str(index), "candidates": [], **session}
            result[str(index)] = current
            continue
        target: dict[str, Any] = current if current is not None else session  # type: ignore[assignment]
        if line.startswith("a=ice-ufrag:"):
            target["ufrag"] = line.split(":", 1)[1]
        elif line.startswith("a=ice-pwd:"):
            target["pwd"] = line.split(":", 1)[1]
        elif current is not None and line.startswith("a=mid:"):
            current["mid"] = line.split(":", 1)[1]
        elif current is not None and line.startswith("a=candidate:"):
            candidate = candidate_from_sdp(line.split(":", 1)[1])
            current["candidates"].append(candidate_to_dict(candidate))
    by_mid = {}
    for media in result.values():
        mid = media.pop("mid")
        media.setdefault("ufrag", "")
        media.setdefault("pwd", "")
        by_mid[mid] = media
    return by_mid


def strip_candidates(sdp: str) -> str:
    """``sdp`` without its ``a=candidate`` and ``a=end-of-candidates`` lines (what a Jingle
    description carries: candidates travel separately)."""
    lines = [
        line
        for line in sdp.splitlines()
        if not line.startswith(("a=candidate:", "a=end-of-candidates"))
    ]
    return "\r\n".join(lines) + "\r\n"


__all__ = [
    "candidate_from_dict",
    "candidate_sdp_value",
    "candidate_to_dict",
    "candidate_to_sdp",
    "candidates_from_sdp",
    "candidates_from_signal",
    "strip_candidates",
]
