"""tools.filenames: hostile file names made safe, exclusive creation, partial files."""

from __future__ import annotations

import os
import stat
import threading
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libervia.backend.tools.filenames import (
    MAX_NAME_BYTES,
    create_exclusive,
    partial_path,
    safe_file_name,
)

# deterministic: the same examples on every run (CI never fails on a new random draw)
PROPERTIES = settings(max_examples=300, deadline=None, derandomize=True, database=None)

FORBIDDEN = set('/\\<>:"|?*\ufeff\u2028\u2029') | {
    "\u2044",
    "\u2215",
    "\u2216",
    "\u29f8",
    "\u29f9",
    "\ufe68",
    "\uff0f",
    "\uff3c",
    "\u061c",
    "\u200e",
    "\u200f",
    "\u202a",
    "\u202b",
    "\u202c",
    "\u202d",
    "\u202e",
    "\u2066",
    "\u2067",
    "\u2068",
    "\u2069",
}
DEVICES = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{n}" for p in ("COM", "LPT") for n in range(10)}

# names built to hit the rules: separators, dots, spaces, devices, controls, long runs
tricky = st.lists(
    st.sampled_from(
        [
            ".",
            "..",
            "/",
            "\\",
            " ",
            "\t",
            "\n",
            "\x00",
            "\x7f",
            "\x85",
            "\u202e",
            "\u2066",
            "\uff0f",
            "\u2215",
            "\ud800",
            "\u3000",
            "CON",
            "nul",
            "LPT9",
            "com1",
            "a",
            "é",
            "e\u0301",
            "\u0301",
            "😀",
            "漢",
            "tar",
            "gz",
            "-",
            ":",
            "x" * 60,
            "é" * 40,
            "😀" * 30,
        ]
    ),
    max_size=20,
).map("".join)
names = st.one_of(st.text(max_size=300), tricky)


def check_safe(result: str) -> None:
    assert result
    assert result not in (".", "..")
    assert not result.startswith(".")
    assert not result[0].isspace() and not result[-1].isspace() and not result.endswith(".")
    assert len(result.encode("utf-8")) <= MAX_NAME_BYTES
    assert unicodedata.normalize("NFC", result) == result
    for char in result:
        assert char not in FORBIDDEN, repr(result)
        assert unicodedata.category(char) not in ("Cc", "Cs", "Zl", "Zp"), repr(result)
    assert result.split(".", 1)[0].rstrip().upper() not in DEVICES
    assert os.path.basename(result) == result and Path(result).name == result


@PROPERTIES
@given(names)
def test_result_is_always_safe(name: str) -> None:
    """Whatever the input, the result is one safe, non-empty, short, normalised name."""
    check_safe(safe_file_name(name))


@PROPERTIES
@given(names)
def test_idempotent(name: str) -> None:
    """A safe name is kept as it is."""
    once = safe_file_name(name)
    assert safe_file_name(once) == once


@PROPERTIES
@given(st.text(min_size=1, max_size=30), st.sampled_from(["pdf", "tar.gz", "jpeg", "ÉTÉ"]))
def test_extension_kept_when_shortened(stem: str, extension: str) -> None:
    """A too long name keeps its extension (one or two short parts)."""
    stem = "a" + stem.replace(".", "")
    result = safe_file_name(stem * 100 + "." + extension)
    assert result.endswith(unicodedata.normalize("NFC", "." + extension))
    check_safe(result)


@PROPERTIES
@given(names, st.text(max_size=20))
def test_fallback_is_safe_too(name: str, fallback: str) -> None:
    """Even a hostile fallback gives a safe name."""
    check_safe(safe_file_name(name, fallback))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("Été 2024 — photos.tar.gz", "Été 2024 — photos.tar.gz"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("/etc/passwd", "_etc_passwd"),
        ("..", "file"),
        (".", "file"),
        ("", "file"),
        ("   ", "file"),
        ("......", "file"),
        (". . .", "file"),
        (".bashrc", "bashrc"),
        ("..hidden.txt", "hidden.txt"),
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("LPT9.tar.gz", "_LPT9.tar.gz"),
        ("aux", "_aux"),
        ("Nul.", "_Nul"),
        ("CON .txt", "_CON .txt"),
        ("COM¹", "_COM¹"),
        ("CONSOLE.txt", "CONSOLE.txt"),
        ("my con.txt", "my con.txt"),
        ("a/b\\c", "a_b_c"),
        ("\x00", "_"),
        ("a\x00b", "a_b"),
        ("line\nbreak\r.txt", "line_break_.txt"),
        ("tab\there", "tab_here"),
        ("invoice\u202efdp.exe", "invoice_fdp.exe"),
        ("\u2067evil\u2069.txt", "_evil_.txt"),
        ("name...", "name"),
        ("name . . ", "name"),
        ("  padded  ", "padded"),
        ("\uff0fetc\uff0fpasswd", "_etc_passwd"),
        ("a\u2215b\u2044c\uff3cd", "a_b_c_d"),
        ("report: Q3?.pdf", "report_ Q3_.pdf"),
        ("-rf", "-rf"),
        ("--help", "--help"),
        ("e\u0301te\u0301", "été"),
        ("\ud800x", "_x"),
        ("\ufeffbom.txt", "_bom.txt"),
    ],
)
def test_examples(name: str, expected: str) -> None:
    """Hostile and ordinary names."""
    assert safe_file_name(name) == expected
    check_safe(expected)


def test_fallback() -> None:
    """An empty result gives the fallback, itself made safe; nothing left gives "file"."""
    assert safe_file_name("..", "download") == "download"
    assert safe_file_name("", "../x") == "_x"
    assert safe_file_name("..", "..") == "file"
    assert safe_file_name(". ", "") == "file"


def test_not_a_string() -> None:
    """Only strings are names."""
    with pytest.raises(TypeError):
        safe_file_name(b"name")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        safe_file_name(None)  # type: ignore[arg-type]


def test_long_names_cut_between_characters() -> None:
    """Very long names are cut to MAX_NAME_BYTES at character boundaries, keeping the
    extension."""
    for char in ("x", "é", "漢", "😀"):
        result = safe_file_name(char * 300 + ".pdf")
        assert result.endswith(".pdf")
        assert MAX_NAME_BYTES - 4 < len(result.encode()) <= MAX_NAME_BYTES
        assert set(result[:-4]) == {char}
    assert safe_file_name("x" * 300 + ".tar.gz").endswith("x.tar.gz")
    # a "long extension" is not an extension: the name is simply cut
    long_extension = safe_file_name("a." + "b" * 300)
    assert long_extension == ("a." + "b" * 300)[:MAX_NAME_BYTES]
    # white space left at the cut is removed
    assert safe_file_name("x" * 195 + " " * 10 + "y" * 10 + ".pdf") == "x" * 195 + ".pdf"


def test_device_name_kept_short() -> None:
    """A long device-like name shortened then prefixed still fits."""
    result = safe_file_name("CON." + "x" * 300)
    check_safe(result)


def test_create_exclusive_numbers_duplicates(tmp_path: Path) -> None:
    """Existing files are never overwritten: "name (N).ext" is created instead."""
    (tmp_path / "report.pdf").write_bytes(b"original")
    paths = []
    for content in (b"one", b"two", b"three"):
        path, file = create_exclusive(tmp_path, "report.pdf")
        with file:
            file.write(content)
        paths.append(path)
    assert [p.name for p in paths] == ["report (1).pdf", "report (2).pdf", "report (3).pdf"]
    assert (tmp_path / "report.pdf").read_bytes() == b"original"
    assert [p.read_bytes() for p in paths] == [b"one", b"two", b"three"]
    path, file = create_exclusive(tmp_path, "archive.tar.gz")
    file.close()
    path, file = create_exclusive(tmp_path, "archive.tar.gz")
    file.close()
    assert path.name == "archive (1).tar.gz"
    for name, duplicate in [
        ("v1.2.pdf", "v1.2 (1).pdf"),
        ("notes", "notes (1)"),
        ("x.TAR.XZ", "x (1).TAR.XZ"),
        ("tar.gz", "tar (1).gz"),
        ("a.b c", "a.b c (1)"),
    ]:
        for _ in range(2):
            path, file = create_exclusive(tmp_path, name)
            file.close()
        assert path.name == duplicate


def test_create_exclusive_concurrent(tmp_path: Path) -> None:
    """Threads creating the same name at once all get a file of their own."""
    barrier = threading.Barrier(8)
    results: list[Path] = []
    lock = threading.Lock()

    def create(index: int) -> None:
        barrier.wait()
        path, file = create_exclusive(tmp_path, "same.bin")
        with file:
            file.write(bytes([index]))
        with lock:
            results.append(path)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    names = {p.name for p in results}
    assert names == {"same.bin"} | {f"same ({n}).bin" for n in range(1, 8)}
    assert sorted(p.read_bytes() for p in results) == [bytes([i]) for i in range(8)]


def test_create_exclusive_gives_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When every numbered name is taken, FileExistsError (no endless loop)."""
    monkeypatch.setattr("libervia.backend.tools.filenames.MAX_DUPLICATES", 3)
    for _ in range(4):
        create_exclusive(tmp_path, "a")[1].close()
    with pytest.raises(FileExistsError):
        create_exclusive(tmp_path, "a")
    assert len(list(tmp_path.iterdir())) == 4


def test_create_exclusive_sanitises_and_stays_inside(tmp_path: Path) -> None:
    """Hostile names create a file directly inside the directory, user-readable only."""
    inside = tmp_path / "downloads"
    inside.mkdir()
    for name in ("../../escape", "..", "/etc/passwd", ".hidden", "CON", "a\x00b"):
        path, file = create_exclusive(inside, name)
        file.close()
        assert path.parent == inside
        assert not path.name.startswith(".")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in inside.iterdir()) == [
        "_.._escape",
        "_CON",
        "_etc_passwd",
        "a_b",
        "file",
        "hidden",
    ]
    assert list(tmp_path.iterdir()) == [inside]


def test_create_exclusive_never_follows_links(tmp_path: Path) -> None:
    """A symbolic link (even dangling) or a directory under the name is not reused."""
    target = tmp_path / "target"
    inside = tmp_path / "in"
    inside.mkdir()
    (inside / "a.txt").symlink_to(target)
    (inside / "b.txt").mkdir()
    path, file = create_exclusive(inside, "a.txt")
    file.close()
    assert path.name == "a (1).txt" and not target.exists()
    path, file = create_exclusive(inside, "b.txt")
    file.close()
    assert path.name == "b (1).txt"


def test_create_exclusive_long_duplicates_fit(tmp_path: Path) -> None:
    """Numbered copies of a name of maximal length still fit and keep the extension."""
    name = "é" * 300 + ".pdf"
    first, file = create_exclusive(tmp_path, name)
    file.close()
    second, file = create_exclusive(tmp_path, name)
    file.close()
    assert second.name.endswith(" (1).pdf")
    assert len(second.name.encode()) <= MAX_NAME_BYTES
    assert first != second


def test_create_exclusive_missing_directory(tmp_path: Path) -> None:
    """A missing directory is an error, not created."""
    with pytest.raises(FileNotFoundError):
        create_exclusive(tmp_path / "missing", "a")


@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(names, min_size=1, max_size=6))
def test_create_exclusive_property(tmp_path: Path, batch: list[str]) -> None:
    """Every call creates a new file in the directory, named safely; none is overwritten."""
    directory = tmp_path / f"d{len(list(tmp_path.iterdir()))}"
    directory.mkdir()
    created = []
    for index, name in enumerate(batch):
        path, file = create_exclusive(directory, name)
        with file:
            file.write(str(index).encode())
        assert path.parent == directory
        check_safe(path.name)
        created.append(path)
    assert len(set(created)) == len(batch)
    assert [p.read_bytes() for p in created] == [str(i).encode() for i in range(len(batch))]
    assert len(list(directory.iterdir())) == len(batch)


def test_partial_path() -> None:
    """The partial file is hidden, next to the final one."""
    final = Path("/downloads/report (1).pdf")
    assert partial_path(final) == Path("/downloads/.report (1).pdf.part")
    long = Path("/d") / safe_file_name("é" * 300)
    assert partial_path(long).name == f".{long.name}.part"
    too_long = partial_path(Path("/d") / ("é" * 200))
    assert too_long.parent == Path("/d") and too_long.name.endswith("é.part")
    assert len(too_long.name.encode()) <= 255


def test_partial_then_final(tmp_path: Path) -> None:
    """The intended use: reserve the final name, write the partial file, rename it."""
    final, file = create_exclusive(tmp_path, "../report.pdf")
    file.close()
    partial = partial_path(final)
    partial.write_bytes(b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["._report.pdf.part", "_report.pdf"]
    partial.replace(final)
    assert final.read_bytes() == b"data" and not partial.exists()
