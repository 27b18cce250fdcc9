"""SDP text (RFC 8866, as WebRTC writes it) <-> :class:`~.model.SessionDescription`.

:func:`parse` reads what browsers, libwebrtc and aiortc produce: session- and media-level
ICE/DTLS attributes (media level wins), BUNDLE groups, RTP payload types with fmtp and
rtcp-fb, header extensions, sources and source groups, msid, data channels in the modern
(``UDP/DTLS/SCTP`` + ``a=sctp-port``) and legacy (``DTLS/SCTP`` + ``a=sctpmap``) forms.
Unknown attributes are ignored. :func:`build` writes the modern form, one m= section per
media, ``a=mid`` always (aiortc needs it, see the fact sheet §4.3), candidates only when the
model has some.

Limits: at most :data:`MAX_SDP` characters and :data:`MAX_MEDIA` m= sections; anything
malformed raises :class:`~.model.SDPError` with the offending line.
"""

from __future__ import annotations

from libervia.backend.tools.webrtc.model import (
    DATACHANNEL_PROTOCOLS,
    DIRECTIONS,
    MEDIA_TYPES,
    Candidate,
    Fingerprint,
    HeaderExtension,
    IceTransport,
    Media,
    PayloadType,
    SDPError,
    SessionDescription,
    Source,
    SourceGroup,
)

MAX_SDP = 256 * 1024
MAX_MEDIA = 64
#: fingerprint hash functions we keep (the first one found in this order is used)
FINGERPRINT_HASHES = ("sha-256", "sha-384", "sha-512", "sha-1")


def _int(value: str, line: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise SDPError(f"not a number in {line!r}") from None


def parse_candidate(value: str) -> Candidate:
    """The value of an ``a=candidate:`` attribute (with or without the ``candidate:``
    prefix)."""
    line = value
    value = value.removeprefix("a=").removeprefix("candidate:")
    parts = value.split()
    if len(parts) < 8 or parts[6] != "typ":
        raise SDPError(f"malformed candidate {line!r}")
    candidate = Candidate(
        foundation=parts[0],
        component_id=_int(parts[1], line),
        transport=parts[2].lower(),
        priority=_int(parts[3], line),
        address=parts[4],
        port=_int(parts[5], line),
        type=parts[7],
    )
    extra = parts[8:]
    for key, val in zip(extra[::2], extra[1::2], strict=False):
        if key == "raddr":
            candidate.rel_addr = val
        elif key == "rport":
            candidate.rel_port = _int(val, line)
        elif key == "generation":
            candidate.generation = _int(val, line)
        elif key == "network-id":
            candidate.network = _int(val, line)
    candidate.check()
    return candidate


def build_candidate(candidate: Candidate) -> str:
    """The value of an ``a=candidate:`` attribute, without ``a=`` (``candidate:...``)."""
    parts = [
        f"candidate:{candidate.foundation}",
        str(candidate.component_id),
        candidate.transport,
        str(candidate.priority),
        candidate.address,
        str(candidate.port),
        "typ",
        candidate.type,
    ]
    if candidate.rel_addr is not None and candidate.rel_port is not None:
        parts += ["raddr", candidate.rel_addr, "rport", str(candidate.rel_port)]
    if candidate.generation is not None:
        parts += ["generation", str(candidate.generation)]
    if candidate.network is not None:
        parts += ["network-id", str(candidate.network)]
    return " ".join(parts)


class _Parser:
    def __init__(self) -> None:
        self.description = SessionDescription()
        #: session-level ICE/DTLS values (media-level ones win)
        self.session_transport = IceTransport()
        self.media: Media | None = None
        self.media_transport: IceTransport | None = None
        self.fingerprints: dict[int, dict[str, str]] = {}
        self.setup: dict[int, str] = {}
        #: session-level a=extmap-allow-mixed (Chrome writes it there) applies to all RTP media
        self.extmap_allow_mixed = False

    def run(self, text: str) -> SessionDescription:
        if len(text) > MAX_SDP:
            raise SDPError(f"SDP longer than {MAX_SDP} characters")
        lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n")]
        lines = [line for line in lines if line]
        if not lines or not lines[0].startswith("v="):
            raise SDPError("SDP must start with v=")
        for line in lines:
            if len(line) < 2 or line[1] != "=":
                raise SDPError(f"malformed SDP line {line!r}")
            if "\r" in line or "\x00" in line:  # build() would refuse it: never accept it
                raise SDPError(f"stray CR or NUL in SDP line {line[:100]!r}")
            kind, value = line[0], line[2:]
            if kind == "o":
                parts = value.split()
                if len(parts) >= 3:
                    self.description.session_id, self.description.session_version = parts[1:3]
            elif kind == "m":
                self._new_media(value, line)
            elif kind == "a":
                self._attribute(value, line)
            elif kind == "b" and self.media is not None and value.startswith("AS:"):
                self.media.bandwidth = _int(value[3:], line)
        self._finish()
        return self.description

    def _new_media(self, value: str, line: str) -> None:
        parts = value.split()
        if len(parts) < 3:
            raise SDPError(f"malformed m= line {line!r}")
        if len(self.description.media) >= MAX_MEDIA:
            raise SDPError(f"more than {MAX_MEDIA} media")
        media_type, port, protocol = parts[0], parts[1].split("/")[0], parts[2]
        if media_type not in MEDIA_TYPES:
            raise SDPError(f"unsupported media {media_type!r}")
        media = Media(
            name=str(len(self.description.media)),
            media=media_type,
            protocol=protocol,
            port=_int(port, line),
        )
        if not 0 <= media.port < 65536:
            raise SDPError(f"port out of range in {line!r}")
        if media_type == "application":
            if protocol not in DATACHANNEL_PROTOCOLS:
                raise SDPError(f"unsupported application protocol {protocol!r}")
            if protocol == "DTLS/SCTP" and len(parts) > 3 and parts[3].isdigit():
                # legacy form: the format is the SCTP port (a=sctpmap may repeat it)
                media.sctp_port = _int(parts[3], line)
        else:
            media.payload_types = [PayloadType(_int(pt, line)) for pt in parts[3:]]
        self.description.media.append(media)
        self.media = media
        self.media_transport = media.transport

    def _payload(self, pt_id: str, line: str) -> PayloadType:
        assert self.media is not None
        number = _int(pt_id, line)
        for payload in self.media.payload_types:
            if payload.id == number:
                return payload
        payload = PayloadType(number)
        self.media.payload_types.append(payload)
        return payload

    def _attribute(self, value: str, line: str) -> None:  # noqa: C901 - one branch per attribute
        name, _, arg = value.partition(":")
        transport = self.media_transport or self.session_transport
        index = len(self.description.media)  # 0: session level
        media = self.media
        if name == "group":
            if not arg.split():
                raise SDPError(f"group without semantics {line!r}")
            semantics, *mids = arg.split()
            self.description.groups.append((semantics, mids))
        elif name == "msid-semantic":
            self.description.msid_semantic = arg.strip()
        elif name == "ice-ufrag":
            transport.ufrag = arg
        elif name == "ice-pwd":
            transport.pwd = arg
        elif name == "ice-options":
            transport.options = arg.split()
        elif name == "fingerprint":
            hash_name, _, fp = arg.partition(" ")
            if not fp:
                raise SDPError(f"malformed fingerprint {line!r}")
            self.fingerprints.setdefault(index, {})[hash_name.lower()] = fp.strip()
        elif name == "setup":
            self.setup[index] = arg
        elif name == "candidate":
            if media is None:
                raise SDPError("candidate outside of a media section")
            transport.candidates.append(parse_candidate(arg))
        elif media is None:
            if name == "extmap-allow-mixed":
                self.extmap_allow_mixed = True
            return
        elif name == "mid":
            media.name = arg
        elif media.is_datachannel and name not in ("sctp-port", "max-message-size", "sctpmap"):
            return  # RTP attributes mean nothing for a data channel (and are not built)
        elif name in DIRECTIONS:
            media.direction = name
        elif name == "rtcp-mux":
            media.rtcp_mux = True
        elif name == "extmap-allow-mixed":
            media.extmap_allow_mixed = True
        elif name == "msid":
            media.msid = arg
        elif name == "sctp-port":
            media.sctp_port = _int(arg, line)
        elif name == "max-message-size":
            media.max_message_size = _int(arg, line)
        elif name == "sctpmap":  # legacy: a=sctpmap:5000 webrtc-datachannel 1024
            if not arg.split():
                raise SDPError(f"malformed sctpmap {line!r}")
            media.sctp_port = _int(arg.split()[0], line)
        elif name == "rtpmap":
            pt_id, _, encoding = arg.partition(" ")
            parts = encoding.split("/")
            payload = self._payload(pt_id, line)
            payload.name = parts[0]
            if len(parts) > 1:
                payload.clockrate = _int(parts[1], line)
            if len(parts) > 2:
                payload.channels = _int(parts[2], line)
        elif name == "fmtp":
            pt_id, _, params = arg.partition(" ")
            payload = self._payload(pt_id, line)
            for param in params.split(";"):
                key, _, val = param.strip().partition("=")
                if key:
                    payload.parameters[key] = val
        elif name == "rtcp-fb":
            pt_id, _, feedback = arg.partition(" ")
            fb_type, _, subtype = feedback.partition(" ")
            if pt_id == "*":
                for payload in media.payload_types:
                    payload.feedback.append((fb_type, subtype))
            else:
                self._payload(pt_id, line).feedback.append((fb_type, subtype))
        elif name in ("ptime", "maxptime"):
            for payload in media.payload_types:
                setattr(payload, name, _int(arg, line))
        elif name == "extmap":
            ext_id, _, rest = arg.partition(" ")
            uri = rest.split()[0] if rest.split() else ""
            ext_id, _, direction = ext_id.partition("/")
            media.extensions.append(
                HeaderExtension(_int(ext_id, line), uri, direction or "sendrecv")
            )
        elif name == "ssrc":
            ssrc_id, _, attr = arg.partition(" ")
            number = _int(ssrc_id, line)
            source = next((s for s in media.sources if s.ssrc == number), None)
            if source is None:
                source = Source(number)
                media.sources.append(source)
            key, _, val = attr.partition(":")
            if key:
                source.parameters[key] = val
        elif name == "ssrc-group":
            if not arg.split():
                raise SDPError(f"ssrc-group without semantics {line!r}")
            semantics, *ssrcs = arg.split()
            media.source_groups.append(SourceGroup(semantics, [_int(s, line) for s in ssrcs]))

    def _finish(self) -> None:
        session = self.session_transport
        for index, media in enumerate(self.description.media, start=1):
            transport = media.transport
            transport.ufrag = transport.ufrag or session.ufrag
            transport.pwd = transport.pwd or session.pwd
            transport.options = transport.options or list(session.options)
            if self.extmap_allow_mixed and not media.is_datachannel:
                media.extmap_allow_mixed = True
            fingerprints = self.fingerprints.get(index) or self.fingerprints.get(0) or {}
            setup = self.setup.get(index) or self.setup.get(0) or "actpass"
            for hash_name in FINGERPRINT_HASHES:
                if hash_name in fingerprints:
                    transport.fingerprint = Fingerprint(hash_name, fingerprints[hash_name], setup)
                    break
        names = [m.name for m in self.description.media]
        if len(set(names)) != len(names):
            raise SDPError("two media with the same mid")


def parse(text: str) -> SessionDescription:
    """Parse an SDP offer or answer.

    Raises:
        SDPError: malformed, too big, or an unsupported media type.
    """
    if not isinstance(text, str):
        raise SDPError("the SDP must be a string")
    return _Parser().run(text)


def _direction_line(media: Media) -> str:
    return f"a={media.direction}"


def build(description: SessionDescription, candidates: bool = True) -> str:
    """Write an SDP (CRLF line ends); ``candidates=False`` leaves them out.

    Raises:
        SDPError: a value holds a line break (it would inject SDP lines).
    """
    lines = [
        "v=0",
        f"o=- {description.session_id} {description.session_version} IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
    ]
    for semantics, mids in description.groups:
        lines.append(f"a=group:{semantics} {' '.join(mids)}".rstrip())
    if description.msid_semantic:
        lines.append(f"a=msid-semantic:{description.msid_semantic}")
    for media in description.media:
        lines += _media_lines(media, candidates)
    for line in lines:
        # values may come from a peer's Jingle elements: never let one inject SDP lines
        if any(c in line for c in "\r\n\x00"):
            raise SDPError(f"line break in SDP value {line!r}")
    return "\r\n".join(lines) + "\r\n"


def _media_lines(media: Media, candidates: bool) -> list[str]:
    if media.is_datachannel:
        formats = "webrtc-datachannel"
    else:
        formats = " ".join(str(p.id) for p in media.payload_types)
    lines = [f"m={media.media} {media.port} {media.protocol} {formats}", "c=IN IP4 0.0.0.0"]
    if media.bandwidth is not None:
        lines.append(f"b=AS:{media.bandwidth}")
    lines.append(f"a=mid:{media.name}")
    transport = media.transport
    if transport.ufrag:
        lines.append(f"a=ice-ufrag:{transport.ufrag}")
    if transport.pwd:
        lines.append(f"a=ice-pwd:{transport.pwd}")
    if transport.options:
        lines.append(f"a=ice-options:{' '.join(transport.options)}")
    if transport.fingerprint is not None:
        fp = transport.fingerprint
        lines.append(f"a=fingerprint:{fp.hash} {fp.value}")
        lines.append(f"a=setup:{fp.setup}")
    if candidates:
        lines += [f"a={build_candidate(c)}" for c in transport.candidates]
    if media.is_datachannel:
        if media.sctp_port is not None:
            lines.append(f"a=sctp-port:{media.sctp_port}")
        if media.max_message_size is not None:
            lines.append(f"a=max-message-size:{media.max_message_size}")
        return lines
    lines.append(_direction_line(media))
    if media.msid:
        lines.append(f"a=msid:{media.msid}")
    if media.rtcp_mux:
        lines.append("a=rtcp-mux")
    if media.extmap_allow_mixed:
        lines.append("a=extmap-allow-mixed")
    for ext in media.extensions:
        direction = "" if ext.direction == "sendrecv" else f"/{ext.direction}"
        lines.append(f"a=extmap:{ext.id}{direction} {ext.uri}")
    for payload in media.payload_types:
        lines += _payload_lines(payload)
    ptimes = {p.ptime for p in media.payload_types if p.ptime is not None}
    if len(ptimes) == 1:
        lines.append(f"a=ptime:{ptimes.pop()}")
    maxptimes = {p.maxptime for p in media.payload_types if p.maxptime is not None}
    if len(maxptimes) == 1:
        lines.append(f"a=maxptime:{maxptimes.pop()}")
    for group in media.source_groups:
        lines.append(f"a=ssrc-group:{group.semantics} {' '.join(map(str, group.ssrcs))}")
    for source in media.sources:
        for key, value in source.parameters.items():
            lines.append(
                f"a=ssrc:{source.ssrc} {key}:{value}" if value else f"a=ssrc:{source.ssrc} {key}"
            )
    return lines


def _payload_lines(payload: PayloadType) -> list[str]:
    lines = []
    if payload.name:
        encoding = f"{payload.name}/{payload.clockrate or 0}"
        if payload.channels is not None:
            encoding += f"/{payload.channels}"
        lines.append(f"a=rtpmap:{payload.id} {encoding}")
    for fb_type, subtype in payload.feedback:
        lines.append(f"a=rtcp-fb:{payload.id} {fb_type} {subtype}".rstrip())
    if payload.parameters:
        params = ";".join(f"{k}={v}" if v else k for k, v in payload.parameters.items())
        lines.append(f"a=fmtp:{payload.id} {params}")
    return lines
