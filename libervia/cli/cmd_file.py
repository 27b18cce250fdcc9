"""``li file``: send and receive files (Jingle file transfer, XEP-0234).

``li file send`` offers each file with the daemon's ``file_send`` method and follows its
transfer through the progress signals (:class:`~libervia.cli.progress.Progress`).
``li file receive`` waits for the file offers the daemon announces with ``action_new``
(``{"type": "file", ...}``), asks the user, answers with ``action_launch`` and follows the
transfer the same way. An offer withdrawn before the answer (``action_update`` with status
``cancelled``: the sender cancelled, another device of the account took it, the profile was
disconnected) is reported and ends the command (exit code 20) unless ``--multiple``.
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


async def follow(
    cli: Cli, progress: Progress, progress_id: str, name: str, size: int | None
) -> tuple[dict[str, Any] | None, str]:
    """Wait for the end of a transfer: (finished metadata, "") or (None, error text)."""
    try:
        return await progress.wait(progress_id, position_poll(cli, progress_id, size)), ""
    except CommandError as e:
        return None, e.message.removeprefix(f"{name} failed: ")


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

    async def run(self, cli: Cli) -> None:
        args = cli.args
        if args.name is not None and len(args.files) > 1:
            raise CommandError("--name is only for one file", C.EXIT_USAGE)
        paths = [Path(f).expanduser().absolute() for f in args.files]
        for path in paths:
            if not path.is_file():
                raise CommandError(f"{path}: no such file", C.EXIT_NOT_FOUND)
        options: dict[str, Any] = {"transport": args.transport}
        if args.jmi:
            options["jmi"] = True
        extra = json.dumps(options)
        results = []
        for path in paths:
            results.append(await self.send(cli, path, args.name or path.name, extra))
        if cli.out.json:
            cli.out.print_json(results)
        failed = [r for r in results if r["status"] != "finished"]
        if len(failed) == 1 and len(results) == 1:
            raise CommandError(f"{failed[0]['name']}: {failed[0]['error']}")
        if failed:
            details = "; ".join(f"{r['name']} ({r['error']})" for r in failed)
            raise CommandError(f"{len(failed)} of {len(results)} files not sent: {details}")

    async def send(self, cli: Cli, path: Path, name: str, extra: str) -> dict[str, Any]:
        args = cli.args
        size = path.stat().st_size
        progress = new_progress(cli, name)
        answer = await cli.bridge.file_send(
            args.jid, str(path), name, args.description, extra, cli.profile
        )
        data = json.loads(answer) if answer else {}
        result: dict[str, Any] = {
            "file": str(path),
            "name": name,
            "to": args.jid,
            "progress": data.get("progress", ""),
            "session_id": data.get("session_id", ""),
        }
        cli.out.info(f"offering {name} ({human_size(size)}) to {args.jid}…", style="dim")
        metadata, error = await follow(cli, progress, result["progress"], name, size)
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
        "sender cancelled, another device of yours took it) ends the command with exit code 20."
    )
    examples = (
        ("li file receive", "accept (after asking) the next file offered"),
        ("li file receive alice@example.org --yes --path ~/inbox", "from alice, to ~/inbox"),
        ("li file receive -m -y -O json", "every file offered by a contact, as JSON lines"),
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

    async def run(self, cli: Cli) -> None:
        args = cli.args
        self.directory = ""
        if args.path:
            directory = Path(args.path).expanduser().absolute()
            if not directory.is_dir():
                raise CommandError(f"{directory}: no such directory", C.EXIT_NOT_FOUND)
            self.directory = str(directory)
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
            if e.code != "NotFound":
                raise
            # withdrawn just before our answer reached the daemon (its action_update came
            # first, on the same connection), or answered by another frontend
            if offer.cancelled.done():
                return self.cancelled(offer)
            return self.result(offer, "cancelled", reason="the offer is no longer pending")
        finally:
            self.pending.pop(offer.action_id, None)
        if progress is None:
            cli.out.info(f"{offer.name} from {offer.sender}: declined", style="dim")
            return self.result(offer, "refused")
        progress_id = str(offer.data.get("progress_id", ""))
        size = offer.file.get("size")
        metadata, error = await follow(
            cli, progress, progress_id, offer.name, size if isinstance(size, int) else None
        )
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
        "bytestreams or in-band."
    )
    subcommands = (FileSend, FileReceive)
