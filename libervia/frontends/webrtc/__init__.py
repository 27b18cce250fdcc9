"""WebRTC data-channel file transfer for Python frontends (aiortc).

With the WebRTC data-channel Jingle transport the daemon does the signalling and the frontend
moves the bytes: :class:`DataChannelSender` and :class:`DataChannelReceiver` implement the
frontend's side of the bridge protocol (see :mod:`~libervia.frontends.webrtc.endpoint`),
:class:`WebRTCConfig` chooses the ICE servers and host addresses, and
:mod:`~libervia.frontends.webrtc.candidates` converts candidates between the bridge's dicts,
aiortc and SDP.

Importing this package imports aiortc (and PyAV): frontends import it only when needed.
"""

from libervia.frontends.webrtc.candidates import (
    candidate_from_dict,
    candidate_to_dict,
    candidates_from_sdp,
    candidates_from_signal,
    strip_candidates,
)
from libervia.frontends.webrtc.config import WebRTCConfig, host_addresses
from libervia.frontends.webrtc.endpoint import WEBRTC_TRANSPORT, TransferFailed, WebRTCError
from libervia.frontends.webrtc.receiver import DataChannelReceiver
from libervia.frontends.webrtc.sender import DataChannelSender

__all__ = [
    "WEBRTC_TRANSPORT",
    "DataChannelReceiver",
    "DataChannelSender",
    "TransferFailed",
    "WebRTCConfig",
    "WebRTCError",
    "candidate_from_dict",
    "candidate_to_dict",
    "candidates_from_sdp",
    "candidates_from_signal",
    "host_addresses",
    "strip_candidates",
]
