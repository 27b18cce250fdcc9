"""File names chosen by other people, made safe to create on our disk.

A peer offering a file (XEP-0234) chooses its name: it is hostile input. :func:`safe_file_name`
turns any string into one plain file name that stays inside the directory it is joined to;
:func:`create_exclusive` creates a new file under that name without ever overwriting one (a
duplicate becomes ``report (1).pdf``); :func:`partial_path` is where the data goes until the
transfer is complete.

The rules, in order:

1. Unicode NFC (so that a name and its decomposed twin are the same file).
2. Path separators, and the characters that look like them (full-width and small solidus,
   division and fraction slashes...), become ``_``; so do the characters Windows refuses in
   names (``<>:"|?*``: the download directory may be on a FAT/NTFS/SMB file system), control
   characters (C0, DEL, C1: NUL, newlines, escape...), lone surrogates (not encodable), line and
   paragraph separators, and bidirectional controls (``U+202E`` would display
   ``invoice\\u202efdp.exe`` as ``invoiceexe.pdf``).
3. Leading dots and white space are removed (no hidden files, never ``.`` or ``..``), and so are
   trailing dots and white space (Windows drops them, making two names the same file).
4. At most :data:`MAX_NAME_BYTES` bytes of UTF-8, cut between characters, keeping the extension.
5. Windows device names (``CON``, ``nul.txt``, ``LPT9.tar.gz``...) get a ``_`` prefix.
6. Nothing left: the fallback name.

A leading ``-`` is kept: joined to a directory it is harmless, but a command line built from
such a name must use the full path (or ``--``) so that it is not read as an option.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from typing import BinaryIO

#: the longest name we create, in bytes of UTF-8 (file systems allow 255; this leaves room
#: for " (12)" and for the ".<name>.part" of the partial file)
MAX_NAME_BYTES = 200

#: the longest name file systems accept (ext4, btrfs, XFS, NTFS in UTF-16 units...)
_MAX_FS_NAME_BYTES = 255

#: how many numbered duplicates ("name (N).ext") create_exclusive tries before giving up
MAX_DUPLICATES = 9999

#: an extension part: at most 16 characters (64 bytes of UTF-8), no white space
_EXTENSION_PART = re.compile(r"[^\s.]{1,16}")

_SEPARATORS = frozenset(
    "/\\"
    "\u2044"  # FRACTION SLASH
    "\u2215"  # DIVISION SLASH
    "\u2216"  # SET MINUS
    "\u2571"  # BOX DRAWINGS LIGHT DIAGONAL UPPER RIGHT TO LOWER LEFT
    "\u2572"  # BOX DRAWINGS LIGHT DIAGONAL UPPER LEFT TO LOWER RIGHT
    "\u29f5"  # REVERSE SOLIDUS OPERATOR
    "\u29f8"  # BIG SOLIDUS
    "\u29f9"  # BIG REVERSE SOLIDUS
    "\ufe68"  # SMALL REVERSE SOLIDUS
    "\uff0f"  # FULLWIDTH SOLIDUS
    "\uff3c"  # FULLWIDTH REVERSE SOLIDUS
    "\u0338"  # COMBINING LONG SOLIDUS OVERLAY
    "\u20e5"  # COMBINING REVERSE SOLIDUS OVERLAY
)
#: refused by Windows in names (":" also opens NTFS alternate data streams)
_WINDOWS_RESERVED = frozenset('<>:"|?*')
_BIDI_CONTROLS = frozenset(
    "\u061c"  # ARABIC LETTER MARK
    "\u200e\u200f"  # LEFT-TO-RIGHT / RIGHT-TO-LEFT MARK
    "\u202a\u202b\u202c\u202d\u202e"  # embeddings, pop, overrides
    "\u2066\u2067\u2068\u2069"  # isolates
)
_OTHER_REPLACED = frozenset("\ufeff")  # BYTE ORDER MARK / ZERO WIDTH NO-BREAK SPACE
#: Unicode categories replaced: control, surrogate, line separator, paragraph separator
_REPLACED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})

_DEVICE_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"}
)


def _replace_char(char: str) -> str:
    if (
        char in _SEPARATORS
        or char in _WINDOWS_RESERVED
        or char in _BIDI_CONTROLS
        or char in _OTHER_REPLACED
        or unicodedata.category(char) in _REPLACED_CATEGORIES
    ):
        return "_"
    return char


def _strip(name: str) -> str:
    """Without leading dots and white space, nor trailing ones."""
    start = 0
    while start < len(name) and (name[start] == "." or name[start].isspace()):
        start += 1
    end = len(name)
    while end > start and (name[end - 1] == "." or name[end - 1].isspace()):
        end -= 1
    return name[start:end]


def _split_extension(name: str) -> tuple[str, str]:
    """``(stem, extension)``: the last short dotted part, with ``.tar`` before it
    (``.tar.gz``); never the whole name (``.pdf`` alone has no stem, so no extension)."""
    head, dot, part = name.rpartition(".")
    if not dot or not _strip(head) or not _EXTENSION_PART.fullmatch(part):
        return name, ""
    stem, extension = head, f".{part}"
    head, dot, part = stem.rpartition(".")
    if dot and part.lower() == "tar" and _strip(head):
        stem, extension = head, f".{part}{extension}"
    return stem, extension


def _cut(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` of at most ``max_bytes`` bytes of UTF-8, whole characters."""
    encoded = text.encode()
    if len(encoded) <= max_bytes:
        return text
    # dropping an incomplete final sequence keeps every character whole
    return encoded[: max(max_bytes, 0)].decode(errors="ignore")


def _fit(name: str, suffix: str = "", max_bytes: int = MAX_NAME_BYTES) -> str:
    """``name`` with ``suffix`` added before its extension, shortened to ``max_bytes``."""
    stem, extension = _split_extension(name)
    if len(f"{stem}{suffix}{extension}".encode()) <= max_bytes:
        return f"{stem}{suffix}{extension}"
    budget = max_bytes - len(f"{suffix}{extension}".encode())
    return f"{_cut(stem, budget).rstrip()}{suffix}{extension}"


def _is_device(name: str) -> bool:
    return name.split(".", 1)[0].rstrip().upper() in _DEVICE_NAMES


def _sanitise(name: str) -> str:
    name = unicodedata.normalize("NFC", name)
    name = _strip("".join(_replace_char(char) for char in name))
    if not name:
        return ""
    name = _strip(_fit(name))
    if _is_device(name):
        name = _fit(f"_{name}")
    return name


def safe_file_name(name: str, fallback: str = "file") -> str:
    """A name safe to create inside a directory, made from ``name`` (see the module's rules).

    The result is one path component, never empty, ``.`` or ``..``, never hidden, without
    separators or control characters, at most :data:`MAX_NAME_BYTES` bytes of UTF-8, and
    ``safe_file_name(result) == result``. An empty result is replaced by ``fallback``
    (sanitised too; ``"file"`` if nothing is left of it either).

    Raises:
        TypeError: ``name`` or ``fallback`` is not a string.
    """
    if not isinstance(name, str) or not isinstance(fallback, str):
        raise TypeError("file names must be strings")
    result = name
    # every rule keeps the others' results, but a second pass costs little and makes sure the
    # result is a fixed point whatever the interplay of normalisation and cuts
    for _ in range(4):
        cleaned = _sanitise(result)
        if cleaned == result:
            break
        result = cleaned
    if not result:
        return safe_file_name(fallback) if fallback and fallback != name else "file"
    return result


def create_exclusive(directory: Path, name: str) -> tuple[Path, BinaryIO]:
    """Create and open a NEW file for writing in ``directory``, named after ``name``.

    The name is :func:`safe_file_name` (``name``); when a file (or anything else: directory,
    symbolic link, even a dangling one) already has it, ``stem (1).ext``, ``stem (2).ext``... are
    tried. Creation is atomic (``O_CREAT | O_EXCL``): an existing file is never overwritten,
    even by a concurrent writer. The file is readable and writable by its owner only.

    Returns:
        The path of the new file, and the file open in binary write mode (the caller closes it).

    Raises:
        FileExistsError: :data:`MAX_DUPLICATES` numbered names are taken too.
        OSError: the directory does not exist, is not writable...
    """
    directory = Path(directory)
    base = safe_file_name(name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for number in range(MAX_DUPLICATES + 1):
        candidate = base if number == 0 else _fit(base, f" ({number})")
        path = directory / candidate
        if path.parent != directory:  # cannot happen with a safe name: never risk it
            raise ValueError(f"unsafe file name {candidate!r}")
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:
            continue
        return path, os.fdopen(fd, "wb")
    raise FileExistsError(f"{base!r} and {MAX_DUPLICATES} numbered copies exist in {directory}")


def partial_path(final: Path) -> Path:
    """Where the data of ``final`` is written until it is complete: ``.<final name>.part`` in
    the same directory (hidden; renamed to ``final`` on success, removed on failure).

    The name of a :func:`create_exclusive` file always fits; a longer one is cut so that the
    partial name stays within the 255 bytes file systems allow.
    """
    final = Path(final)
    return final.with_name(f".{_cut(final.name, _MAX_FS_NAME_BYTES - 6)}.part")
