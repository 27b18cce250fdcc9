"""``li file``: send and receive files (Jingle file transfer, XEP-0234).

``li file send`` offers each file with the daemon's ``file_send`` method and follows its
transfer through the progress signals (:class:`~libervia.cli.progress.Progress`).
``li file receive`` waits for the file offers the daemon announces with ``action_new``
(``{"type": "file", ...}``), asks the user, answers with ``action_launch`` and follows the
transfer the same way. An offer withdrawn before the answer (``action_update`` with status
``cancelled``: the sender cancelled, another device of the account took it, the profile was
disconnected) is reported and ends the command (exit code 20) unless ``--multiple``.

With ``--webrtc`` the bytes go over a WebRTC data channel that ``li`` itself holds
(:mod:`libervia.frontends.webrtc`, aiortc, imported only then): the daemon does the Jingle
signalling and ``li`` moves the file. When the peer cannot do WebRTC, or the connection fails
and the daemon falls back to another transport, the daemon moves the bytes as usual and ``li``
just follows the progress.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.filesize import decimal

from libervia.cli import constants as C
from libervia.cli.base import Cli, Command, CommandError, Group, in_thread
from libervia.cli.progress import Poll, Progress
from libervia.frontends.bridge.client import BridgeError

TRANSPORTS = ("auto", "ibb", "s5b")
WEBRTC_SIGNALS = ("call_setup", "ice_candidates_new", "call_ended")
#: seconds between two progress_get while a progress bar is shown
PROGRESS_INTERVAL = 0.2


def human_size(size: Any) -> str:
    """``2300000`` -> ``2.3 MB`` (decimal units); ``?`` when unknown."""
    try:
        return decimal(int(size))
    except (TypeError, ValueError):
        return "?"


def jid_matches(wanted: str, sender: str) -> bool:
    """Whether ``sender`` (a full JID) is ``wanted``: the same bare JID (case-insensitive),
    and the same resource when ``wanted`` has one; anything matches an empty ``wanted``."""
    if not wanted:
        return True
    wanted_bare, _, wanted_resource = wanted.partition("/")
    sender_bare, _, sender_resource = sender.partition("/")
    if wanted_bare.lower() != sender_bare.lower():
        return False
    return not wanted_resource or wanted_resource == sender_resource


def hash_text(metadata: dict[str, Any]) -> str:
    algo = metadata.get("hash_algo") or ""
    if metadata.get("hash_verified"):
        return f"{algo} hash verified".strip()
    if algo:
        return f"{algo} hash NOT verified"
    return "no hash checked"


def summary(metadata: dict[str, Any], what: str) -> str:
    """One line: size, duration, speed, hash check (``what``: ``sent to bob@...``)."""
    size = metadata.get("size")
    text = f"{human_size(size)} {what}"
    duration = metadata.get("duration")
    if isinstance(duration, int | float) and not isinstance(duration, bool):
        text += f" in {duration:.1f} s"
        if duration > 0 and isinstance(size, int | float):
            text += f" ({human_size(size / duration)}/s)"
    return f"{text}, {hash_text(metadata)}"


def speed(metadata: dict[str, Any]) -> float | None:
    """Bytes per second, when the metadata has a size and a duration."""
    size, duration = metadata.get("size"), metadata.get("duration")
    if isinstance(size, int | float) and isinstance(duration, int | float) and duration > 0:
        return size / duration
    return None


def progress_console(cli: Cli) -> Console:
    """Where the progress bars go: ``li``'s stderr (a bar only when it is a terminal)."""
    return Console(file=cli.stderr)


def new_progress(cli: Cli, description: str) -> Progress:
    """A progress follower of ``li``'s, listening already (before the operation starts, so
    that a quick one is not missed)."""
    progress = Progress(cli, description, interval=PROGRESS_INTERVAL, console=progress_console(cli))
    progress.listen()
    return progress


def position_poll(cli: Cli, progress_id: str, size: int | None) -> Poll:
    """``progress_get`` of the daemon; an operation not started yet (waiting for the peer's
    answer) or just ended is at 0 of ``size``."""

    async def poll() -> tuple[int, int | None]:
        try:
            data = await cli.bridge.progress_get(progress_id, cli.profile)
        except BridgeError as e:
            if e.code == "NotFound":
                return 0, size
            raise
        total = data.get("size")
        return int(data.get("position") or 0), int(total) if total not in (None, "") else size

    return poll


def endpoint_poll(cli: Cli, endpoint: Any, progress_id: str, size: int | None) -> Poll:
    """The position of a WebRTC endpoint while it moves the bytes, the daemon's once it
    does (the peer cannot do WebRTC, or the daemon fell back to another transport)."""
    daemon = position_poll(cli, progress_id, size)

    async def poll() -> tuple[int, int | None]:
        if endpoint.uses_webrtc:
            return endpoint.position, size
        return await daemon()

    return poll


async def follow(
    cli: Cli,
    progress: Progress,
    progress_id: str,
    name: str,
    size: int | None,
    poll: Poll | None = None,
) -> tuple[dict[str, Any] | None, str]:
    """Wait for the end of a transfer: (finished metadata, "") or (None, error text)."""
    try:
        poll = poll or position_poll(cli, progress_id, size)
        return await progress.wait(progress_id, poll), ""
    except CommandError as e:
        return None, e.message.removeprefix(f"{name} failed: ")


def add_webrtc_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """--webrtc, --ice-server, --ice-address."""
    parser.add_argument(
        "--webrtc",
        action="store_true",
        help=f"{what} over a WebRTC data channel held by li (the daemon only does the "
        "signalling); the daemon's usual transports when the peer cannot do WebRTC",
    )
    parser.add_argument(
        "--ice-server",
        metavar="URL",
        dest="ice_servers",
        action="append",
        default=[],
        help="STUN/TURN server for --webrtc (stun:HOST[:PORT], turn:HOST[:PORT]; "
        "repeatable; none by default)",
    )
    parser.add_argument(
        "--ice-address",
        metavar="ADDR",
        dest="ice_addresses",
        action="append",
        default=[],
        help="local address allowed for --webrtc host candidates (repeatable; loopback only "
        "when given, e.g. 127.0.0.1; default: every address but loopback)",
    )


def webrtc_config(cli: Cli) -> Any:
    """The WebRTCConfig of the command line, None without --webrtc.

    Raises:
        CommandError: ICE options without --webrtc or invalid; aiortc missing; the daemon
            has no WebRTC signalling.
    """
    args = cli.args
    if not args.webrtc:
        if args.ice_servers or args.ice_addresses:
            raise CommandError("--ice-server and --ice-address need --webrtc", C.EXIT_USAGE)
        return None
    signals = getattr(cli.bridge, "signals", None)
    if isinstance(signals, dict) and not all(name in signals for name in WEBRTC_SIGNALS):
        raise CommandError(
            "the daemon cannot do WebRTC file transfer (no call_setup signal)",
            C.EXIT_MISSING_FEATURE,
        )
    try:
        from libervia.frontends.webrtc import WebRTCConfig
    except ImportError as e:
        raise CommandError(
            f"--webrtc needs aiortc ({e}): pip install aiortc", C.EXIT_MISSING_FEATURE
        ) from None
    try:
        return WebRTCConfig(
            ice_servers=tuple(args.ice_servers),
            host_addresses=tuple(args.ice_addresses) if args.ice_addresses else None,
        )
    except ValueError as e:
        raise CommandError(str(e), C.EXIT_USAGE) from None


class FileSend(Command):
    name = "send"
    help = "send files (Jingle file transfer)"
    description = (
        "Offer FILEs to JID, one after the other, each with a progress bar, then a summary "
        "(size, duration, speed, hash check). Give a full JID (with its resource) to reach a "
        "given device. The exit code is 0 only when every file was sent."
    )
    examples = (
        ("li file send bob@example.org/laptop report.pdf", "send a file"),
        ("li file send bob@example.org/laptop *.jpg -d 'holiday pictures'", "several files"),
        ("li file send bob@example.org/laptop big.iso --transport ibb", "in-band only"),
        ("li file send bob@example.org report.pdf --jmi", "to whichever device accepts"),
        ("li file send bob@example.org/laptop notes.txt --name todo.txt -O json", "as JSON"),
        ("li file send bob@example.org/phone photo.jpg --webrtc", "over WebRTC (li sends)"),
        (
            "li file send bob@example.org/phone a.bin --webrtc --ice-server stun:stun.example.org",
            "over WebRTC, with a STUN server",
        ),
    )
    need_connect = True
    use_output = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "jid",
            metavar="JID",
            help="recipient: a full JID (user@host/res), or a bare one (its most available "
            "device; with --jmi, every device is asked)",
        )
        parser.add_argument("files", metavar="FILE", nargs="+", help="files to send")
        parser.add_argument(
            "-d", "--description", default="", help="description sent with each file"
        )
        parser.add_argument("--name", help="name given to the file (one file only)")
        parser.add_argument(
            "--transport",
            choices=TRANSPORTS,
            default="auto",
            help="how the data goes: auto (the best usable, the default), ibb (in-band, "
            "through the server), s5b (SOCKS5: direct or through a proxy)",
        )
        parser.add_argument(
            "--jmi",
            action="store_true",
            help="propose each file to every device of JID first (Jingle Message Initiation, "
            "XEP-0353) and send it to the one that accepts; for Libervia peers (other clients "
            "ignore file proposals)",
        )
        add_webrtc_arguments(parser, "send the bytes")

    async def run(self, cli: Cli) -> None:
        args = cli.args
        if args.name is not None and len(args.files) > 1:
            raise CommandError("--name is only for one file", C.EXIT_USAGE)
        if args.webrtc and args.transport != "auto":
            raise CommandError("--webrtc is only for --transport auto", C.EXIT_USAGE)
        config = webrtc_config(cli)
        paths = [Path(f).expanduser().absolute() for f in args.files]
        for path in paths:
            if not path.is_file():
                raise CommandError(f"{path}: no such file", C.EXIT_NOT_FOUND)
        options: dict[str, Any] = {"transport": args.transport}
        if args.jmi:
            options["jmi"] = True
        results = []
        for path in paths:
            results.append(await self.send(cli, path, args.name or path.name, options, config))
        if cli.out.json:
            cli.out.print_json(results)
        failed = [r for r in results if r["status"] != "finished"]
        if len(failed) == 1 and len(results) == 1:
            raise CommandError(f"{failed[0]['name']}: {failed[0]['error']}")
        if failed:
            details = "; ".join(f"{r['name']} ({r['error']})" for r in failed)
            raise CommandError(f"{len(failed)} of {len(results)} files not sent: {details}")

    async def send(
        self, cli: Cli, path: Path, name: str, options: dict[str, Any], config: Any
    ) -> dict[str, Any]:
        """Offer one file and follow its transfer; ``config``: a WebRTCConfig for --webrtc."""
        args = cli.args
        size = path.stat().st_size
        progress = new_progress(cli, name)
        endpoint = None
        try:
            if config is None:
                answer = await cli.bridge.file_send(
                    args.jid, str(path), name, args.description, json.dumps(options), cli.profile
                )
                data = json.loads(answer) if answer else {}
            else:
                from libervia.frontends.webrtc import DataChannelSender

                endpoint = DataChannelSender(cli.bridge, cli.profile, config)
                data = await endpoint.send(args.jid, path, name, args.description, options)
            result = await self.follow_send(cli, progress, path, name, size, data, endpoint)
        finally:
            if endpoint is not None:
                await endpoint.close()
        return result

    async def follow_send(
        self,
        cli: Cli,
        progress: Progress,
        path: Path,
        name: str,
        size: int,
        data: dict[str, Any],
        endpoint: Any,
    ) -> dict[str, Any]:
        args = cli.args
        result: dict[str, Any] = {
            "file": str(path),
            "name": name,
            "to": args.jid,
            "progress": data.get("progress", ""),
            "session_id": data.get("session_id", ""),
            "transport": data.get("transport", ""),
        }
        cli.out.info(f"offering {name} ({human_size(size)}) to {args.jid}…", style="dim")
        poll = None
        if endpoint is not None:
            poll = endpoint_poll(cli, endpoint, result["progress"], size)
            if not endpoint.uses_webrtc:
                cli.out.info(f"{args.jid} cannot do WebRTC: the daemon sends {name}", style="dim")
        metadata, error = await follow(cli, progress, result["progress"], name, size, poll)
        if endpoint is not None and endpoint.fallback:
            result["fallback"] = True
        if metadata is None:
            result.update(status="failed", error=error)
            if not cli.out.json:
                cli.error(f"{name}: {error}")
            return result
        result.update(metadata, status="finished", speed=speed(metadata))
        if not cli.out.json:
            cli.out.text(f"{name}: {summary(metadata, f'sent to {args.jid}')}")
        return result


@dataclass
class Offer:
    """A file offer announced by ``action_new``."""

    action_id: str
    data: dict[str, Any]
    #: resolved with the reason when the daemon cancels the offer (``action_update``)
    cancelled: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def file(self) -> dict[str, Any]:
        info = self.data.get("file")
        return info if isinstance(info, dict) else {}

    @property
    def name(self) -> str:
        return str(self.file.get("name") or "(no name)")

    @property
    def sender(self) -> str:
        return str(self.data.get("from_jid") or "?")

    def describe(self) -> str:
        text = self.data.get("message")
        if not isinstance(text, str) or not text:
            size = human_size(self.file.get("size"))
            text = f'{self.sender} wants to send you "{self.name}" ({size})'
            if self.file.get("desc"):
                text += f": {self.file['desc']}"
        if not self.data.get("in_roster"):
            text += " [not in your contacts]"
        return text


class Prompt:
    """Yes/no questions on the terminal, any of which may be withdrawn while asked.

    A withdrawn question leaves its terminal read running: the next question takes its line
    (one read at a time, so no line is lost)."""

    def __init__(self, cli: Cli) -> None:
        self.cli = cli
        self._line: asyncio.Future[str] | None = None

    async def ask(self, question: str, withdrawn: asyncio.Future[str]) -> bool | None:
        """True for yes; False for anything else; None if ``withdrawn`` ends first."""
        self.cli.stderr.write(f"{question} [y/N] ")
        self.cli.stderr.flush()
        if self._line is None:
            self._line = asyncio.ensure_future(in_thread(lambda: sys.stdin.readline()))
        await asyncio.wait({self._line, withdrawn}, return_when=asyncio.FIRST_COMPLETED)
        if not self._line.done():
            self.cli.stderr.write("\n")
            return None
        line, self._line = self._line, None
        return line.result().strip().lower() in ("y", "yes")


class FileReceive(Command):
    name = "receive"
    help = "receive files (Jingle file transfer)"
    description = (
        "Wait for a file offer (from JID only if given), ask whether to accept it (unless "
        "--yes), then show the transfer and a summary (size, duration, speed, hash check). "
        "Exits after one offer unless --multiple. Files are saved in the daemon's download "
        "directory (or --path), never over an existing file unless --overwrite. --yes accepts "
        "without asking the files of your contacts and of JID; offers from anybody else are "
        "still asked (declined without a terminal). An offer withdrawn before the answer (the "
        "sender cancelled, another device of yours took it) ends the command with exit code 20. "
        "With --webrtc, offers made over a WebRTC data channel are received by li itself "
        "(the other offers as usual); without it they cannot be received by li."
    )
    examples = (
        ("li file receive", "accept (after asking) the next file offered"),
        ("li file receive alice@example.org --yes --path ~/inbox", "from alice, to ~/inbox"),
        ("li file receive -m -y -O json", "every file offered by a contact, as JSON lines"),
        ("li file receive --webrtc -y", "also the offers over WebRTC (li receives the bytes)"),
    )
    need_connect = True
    use_output = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "jid", metavar="JID", nargs="?", default="", help="only offers from this entity"
        )
        parser.add_argument(
            "--path", metavar="DIR", help="where to save (default: the download directory)"
        )
        parser.add_argument(
            "--overwrite", action="store_true", help="replace an existing file of that name"
        )
        parser.add_argument(
            "-y", "--yes", action="store_true", help="accept without asking (see above)"
        )
        parser.add_argument(
            "-m", "--multiple", action="store_true", help="keep receiving (Ctrl-C to stop)"
        )
        add_webrtc_arguments(parser, "receive the offers made over WebRTC")

    async def run(self, cli: Cli) -> None:
        args = cli.args
        self.directory = ""
        if args.path:
            directory = Path(args.path).expanduser().absolute()
            if not directory.is_dir():
                raise CommandError(f"{directory}: no such directory", C.EXIT_NOT_FOUND)
            self.directory = str(directory)
        self.config = webrtc_config(cli)
        self.terminal = sys.stdin.isatty()
        if not args.yes and not self.terminal:
            raise CommandError(
                "not asking without a terminal: add --yes to accept the files",
                C.EXIT_CANCELLED,
            )
        self.cli = cli
        self.prompt = Prompt(cli)
        self.queue: asyncio.Queue[Offer] = asyncio.Queue()
        self.pending: dict[str, Offer] = {}
        handles = [
            cli.bridge.on_signal("action_new", self.on_action_new),
            cli.bridge.on_signal("action_update", self.on_action_update),
        ]
        try:
            source = f" from {args.jid}" if args.jid else ""
            cli.out.info(f"waiting for a file{source}… (Ctrl-C to stop)", style="dim")
            while True:
                offer = await self.queue.get()
                result = await self.handle(offer)
                if cli.out.json:
                    cli.out.json_line(result)
                if not args.multiple:
                    self.conclude(result)
                    return
                if result["status"] in ("cancelled", "failed"):
                    cli.error(self.problem(result))
        finally:
            for handle in handles:
                handle.remove()

    # --- signals -------------------------------------------------------------------------

    def on_action_new(self, action_data: str, action_id: str, security: int, profile: str) -> None:
        if profile != self.cli.profile:
            return
        try:
            data = json.loads(action_data)
        except ValueError:
            return
        if not isinstance(data, dict) or data.get("type") != "file":
            return
        if not jid_matches(self.cli.args.jid, str(data.get("from_jid", ""))):
            return  # left to other frontends
        offer = Offer(action_id, data)
        self.pending[action_id] = offer
        self.queue.put_nowait(offer)

    def on_action_update(self, action_id: str, data: str, profile: str) -> None:
        offer = self.pending.get(action_id)
        if offer is None or profile != self.cli.profile:
            return
        try:
            update = json.loads(data)
        except ValueError:
            return
        if isinstance(update, dict) and update.get("status") == "cancelled":
            del self.pending[action_id]
            if not offer.cancelled.done():
                offer.cancelled.set_result(str(update.get("reason") or "cancelled"))

    # --- one offer -----------------------------------------------------------------------

    def result(self, offer: Offer, status: str, **extra: Any) -> dict[str, Any]:
        return {
            "from": offer.sender,
            "name": offer.name,
            "size": offer.file.get("size"),
            "progress": offer.data.get("progress_id", ""),
            "session_id": offer.data.get("session_id", ""),
            "status": status,
            **extra,
        }

    def cancelled(self, offer: Offer) -> dict[str, Any]:
        return self.result(offer, "cancelled", reason=offer.cancelled.result())

    async def decide(self, offer: Offer) -> bool | None:
        """Accept the offer? None when it was withdrawn meanwhile."""
        cli, args = self.cli, self.cli.args
        trusted = bool(offer.data.get("in_roster")) or bool(args.jid)
        if args.yes and trusted:
            cli.out.info(f"{offer.describe()}: accepted", style="dim")
            return True
        if not self.terminal:
            cli.stderr.write(f"li: {offer.describe()}: declined (not asking without a terminal)\n")
            return False
        return await self.prompt.ask(f"{offer.describe()}. Accept?", offer.cancelled)

    async def handle(self, offer: Offer) -> dict[str, Any]:
        cli = self.cli
        if offer.cancelled.done():  # withdrawn while another offer was handled
            return self.cancelled(offer)
        accept = await self.decide(offer)
        if accept is None or offer.cancelled.done():
            return self.cancelled(offer)
        if accept and isinstance(offer.data.get("webrtc"), dict):
            if self.config is None:
                cli.out.info(
                    f"{offer.name} from {offer.sender} is offered over WebRTC: the daemon "
                    "asks for in-band bytestreams instead (slower; --webrtc uses WebRTC)",
                    style="dim",
                )
            else:
                return await self.handle_webrtc(offer)
        answer: dict[str, Any] = {"accept": accept}
        progress = None
        if accept:
            if self.directory:
                answer["path"] = self.directory
            if cli.args.overwrite:
                answer["overwrite"] = True
            progress = new_progress(cli, offer.name)
        try:
            await cli.bridge.action_launch(offer.action_id, json.dumps(answer), cli.profile)
        except BridgeError as e:
            return self.launch_failed(offer, e)
        finally:
            self.pending.pop(offer.action_id, None)
        if progress is None:
            cli.out.info(f"{offer.name} from {offer.sender}: declined", style="dim")
            return self.result(offer, "refused")
        return await self.follow_offer(offer, progress)

    def launch_failed(self, offer: Offer, error: BridgeError) -> dict[str, Any]:
        """The result when action_launch fails with NotFound (re-raises anything else)."""
        if error.code != "NotFound":
            raise error
        # withdrawn just before our answer reached the daemon (its action_update came
        # first, on the same connection), or answered by another frontend
        if offer.cancelled.done():
            return self.cancelled(offer)
        return self.result(offer, "cancelled", reason="the offer is no longer pending")

    async def handle_webrtc(self, offer: Offer) -> dict[str, Any]:
        """Accept an offer made over WebRTC: li receives the bytes (DataChannelReceiver)."""
        from libervia.frontends.webrtc import DataChannelReceiver, WebRTCError

        cli = self.cli
        progress = new_progress(cli, offer.name)
        endpoint = DataChannelReceiver(cli.bridge, cli.profile, self.config)
        try:
            try:
                await endpoint.accept(
                    offer.action_id, offer.data, self.directory, bool(cli.args.overwrite)
                )
            except BridgeError as e:
                return self.launch_failed(offer, e)
            except WebRTCError as e:  # an offer we cannot use: declined
                await cli.bridge.action_launch(
                    offer.action_id, json.dumps({"accept": False}), cli.profile
                )
                return self.result(offer, "failed", error=str(e))
            finally:
                self.pending.pop(offer.action_id, None)
            return await self.follow_offer(offer, progress, endpoint)
        finally:
            await endpoint.close()

    async def follow_offer(
        self, offer: Offer, progress: Progress, endpoint: Any = None
    ) -> dict[str, Any]:
        """Follow an accepted offer to its end; the result (with the summary printed)."""
        cli = self.cli
        progress_id = str(offer.data.get("progress_id", ""))
        size = offer.file.get("size")
        size = size if isinstance(size, int) else None
        poll = None if endpoint is None else endpoint_poll(cli, endpoint, progress_id, size)
        metadata, error = await follow(cli, progress, progress_id, offer.name, size, poll)
        if metadata is None:
            return self.result(offer, "failed", error=error)
        if not cli.out.json:
            what = f"received from {offer.sender}"
            line = f"{offer.name}: {summary(metadata, what)}"
            if metadata.get("path"):
                line += f", saved as {metadata['path']}"
            cli.out.text(line)
        return {**self.result(offer, "finished"), **metadata, "speed": speed(metadata)}

    def problem(self, result: dict[str, Any]) -> str:
        where = f"{result['name']} from {result['from']}"
        if result["status"] == "cancelled":
            reason = result["reason"]
            if reason == "disconnected":
                reason = "the profile was disconnected"
            return (
                f"{where}: the offer was withdrawn (the sender cancelled it, or another "
                f"device of yours took it): {reason}"
            )
        return f"{where}: {result.get('error', result['status'])}"

    def conclude(self, result: dict[str, Any]) -> None:
        """The exit of a single-offer run: 0 when the file was received."""
        if result["status"] == "finished":
            return
        if result["status"] == "refused":
            raise CommandError(
                f"{result['name']} from {result['from']}: declined", C.EXIT_CANCELLED
            )
        if result["status"] == "cancelled":
            raise CommandError(self.problem(result), C.EXIT_CANCELLED)
        raise CommandError(self.problem(result))


class File(Group):
    name = "file"
    help = "send and receive files"
    description = (
        "Send and receive files with Jingle file transfer (XEP-0234), over SOCKS5 "
        "bytestreams, in-band, or (--webrtc) a WebRTC data channel held by li."
    )
    subcommands = (FileSend, FileReceive)
