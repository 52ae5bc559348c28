"""What the bytes of a file are: binary content, archives, UTF-16/32, and which text encoding.

A file is read as UTF-8 unless the run declares another codec (the `encoding` option). When
UTF-8 decoding fails, `not_utf8_issues` tells the two real-world cases apart: a UTF-8 file with
a few lines pasted in from elsewhere (fix those lines; converting the whole file would garble
every other accented letter), and a file saved in a legacy encoding (import it with that
encoding, or save it as UTF-8). A legacy encoding is named only when its bytes support it.
"""

from __future__ import annotations

import codecs
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from customer_import.contract.issues import Issue, quoted_issue, quoting
from customer_import.storage.regular import open_regular

#: A line that is not UTF-8: its number, its byte offset, its bytes, the decoding error.
_BadLine = tuple[int, int, bytes, UnicodeDecodeError]

SNIFF_BYTES = 64 * 1024
RE_SAVE = "In Excel use File > Save As > 'CSV UTF-8 (Comma delimited)'."
_LINES_NAMED = 20  # lines named one by one in a mixed file; the rest are counted

#: Legacy encodings a CSV export really comes in, with the name a person knows them by. ISO-8859-1
#: is not one to offer: where it differs from Windows-1252 (bytes 0x80 to 0x9F) it reads control
#: characters, never text, and elsewhere Windows-1252 reads every byte the same way.
_LEGACY = {
    "cp1252": "Windows-1252 (Western European)",
    "mac_roman": "Mac Roman (old Mac Excel)",
}
_OPTION_NAME = {"cp1252": "windows-1252", "mac_roman": "mac-roman"}
_ICONV_NAME = {"cp1252": "WINDOWS-1252", "mac_roman": "MACINTOSH"}
#: What a rejection's message says when it can name the one encoding the file is in.
_SUGGESTED = re.compile(
    rf"with encoding ({'|'.join(map(re.escape, _OPTION_NAME.values()))})\b|encoded as (UTF-16|UTF-32), not UTF-8"
)
_TYPOGRAPHY = set("’‘“”‚„–—…€•™")
_CLEAR_LEAD = 3  # how far the best reading's score must lead the next one's to be named alone


def suggested_encoding(message: str | None) -> str | None:
    """The one encoding a whole-file rejection's message names for the file (as the `encoding`
    option writes it), if it names one: what the page offers to import the file again with."""
    found = _SUGGESTED.search(message or "")
    return None if found is None else (found.group(1) or found.group(2).lower())


def is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name == "utf-8"


def binary_issue(path: Path, head: bytes, encoding: str) -> Issue | None:
    """The file is not text at all (an archive, a workbook, UTF-16/32 when UTF-8 is expected, NUL bytes)."""
    if head.startswith(b"PK\x03\x04"):
        return Issue(
            None,
            None,
            "binary_file",
            f"The file is {_zip_kind(path, head)} with a .csv name, not a CSV file. {RE_SAVE}",
        )
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return Issue(
            None,
            None,
            "binary_file",
            "The file is an old Excel workbook (.xls) with a .csv name, not a CSV file. " + RE_SAVE,
        )
    wide = codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))
    if wide:
        return None  # declared: NUL bytes are part of every character
    declare = " Or import it with that encoding declared."
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return Issue(None, None, "wrong_encoding", f"The file is encoded as UTF-32, not UTF-8. {RE_SAVE}{declare}")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or _looks_utf16(head):
        return Issue(None, None, "wrong_encoding", f"The file is encoded as UTF-16, not UTF-8. {RE_SAVE}{declare}")
    image = next((name for magic, name in _BINARY_KINDS.items() if head.startswith(magic)), None)
    if image:
        return Issue(None, None, "binary_file", f"The file is {image} with a .csv name, not a CSV file.")
    if _mostly_binary(head):
        offset = head.index(b"\x00") if b"\x00" in head else 0
        line = head.count(b"\n", 0, offset) + 1
        return Issue(
            None,
            None,
            "binary_file",
            f"The file contains binary data (NUL and other control bytes from byte offset {offset}, on line {line}),"
            " so it is not a text CSV file. Export the data again as CSV UTF-8.",
        )
    return None  # a NUL byte here and there is a row issue on its line, as anywhere else in the file


#: The first bytes of binary files that are dropped by mistake, and what they are.
_BINARY_KINDS = {
    b"\x89PNG\r\n\x1a\n": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF-": "a PDF document",
    b"\x1f\x8b": "a gzip archive (unpack it and import the file inside)",
    b"7z\xbc\xaf\x27\x1c": "a 7-Zip archive",
    b"Rar!\x1a\x07": "a RAR archive",
}
#: Bytes that text never holds: NUL and the C0 controls other than tab, line ends, form feed and escape.
_NOT_TEXT = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)])


def _mostly_binary(head: bytes) -> bool:
    """Binary content, not a text file with a stray NUL: at least 16 control bytes, and more than 5 %
    of the first bytes."""
    controls = len(head) - len(head.translate(None, _NOT_TEXT))
    return controls >= 16 and controls * 20 > len(head)


def _zip_kind(path: Path, head: bytes) -> str:
    """What a ZIP container holds, in the words of the program that wrote it. Entry names and an
    OpenDocument's mimetype are stored uncompressed at the start, so the first bytes tell."""
    if b"opendocument.spreadsheet" in head:
        return "a LibreOffice or OpenOffice spreadsheet (.ods)"
    if b"word/" in head or b"ppt/" in head or b"opendocument" in head:
        return "an office document, not a spreadsheet"
    if b"xl/" in head or b"[Content_Types].xml" in head:
        return "an Excel workbook (.xlsx)"
    try:
        with open_regular(path) as raw, zipfile.ZipFile(raw) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return "a ZIP archive (damaged)"
    csvs = [n for n in names if n.lower().endswith(".csv")]
    inside = f" holding {csvs[0]}: unzip it and import that file" if len(csvs) == 1 else ""
    return f"a ZIP archive ({len(names)} file{'' if len(names) == 1 else 's'}{inside})"


def _looks_utf16(head: bytes) -> bool:
    """UTF-16 without a BOM: ASCII text with a NUL byte beside every character."""
    sample = head[:200]
    return len(sample) >= 8 and (sample[1::2].count(0) > len(sample) // 3 or sample[0::2].count(0) > len(sample) // 3)


def not_utf8_issues(path: Path) -> list[Issue]:
    """The lines that are not UTF-8, named, with advice that fits the file as a whole."""
    bad: list[_BadLine] = []
    bad_count, utf8_lines, offset = 0, 0, 0
    with open_regular(path) as raw:
        for number, line in enumerate(_lines(raw), start=1):
            try:
                line.decode("utf-8")
                utf8_lines += not line.isascii()
            except UnicodeDecodeError as error:
                bad_count += 1
                if len(bad) < _LINES_NAMED:
                    bad.append((number, offset, line, error))
            offset += len(line)
    if not bad:
        return [Issue(None, None, "not_utf8", f"The file is not valid UTF-8. {RE_SAVE}")]
    if utf8_lines:
        return _pasted_lines(bad, bad_count, utf8_lines)
    number, start, line, first = bad[0]
    return [
        quoted_issue(number, None, "not_utf8", _legacy_file_message(number, start, line, first, [b[2] for b in bad]))
    ]


def undeclared_issue(path: Path, encoding: str) -> Issue:
    """The first line a declared encoding cannot read (for a codec of more than a byte a character,
    whose lines cannot be decoded apart, the file as a whole)."""
    where, number = "The file", None
    if not encoding.startswith(("utf_16", "utf_32", "utf-16", "utf-32")):
        with open_regular(path) as raw:
            for n, line in enumerate(_lines(raw), start=1):
                if not _decodes(line, encoding):
                    where, number = f"Line {n}", n
                    break
    return Issue(
        number,
        None,
        "wrong_encoding",
        (
            f"{where} cannot be read as {encoding}, the encoding this import declared. Import the file with the"
            f" encoding it was saved in (UTF-8 if it came from Excel's CSV UTF-8), or save it as CSV UTF-8. {RE_SAVE}"
        ),
    )


def _lines(raw: BinaryIO) -> Iterator[bytes]:
    """Physical lines as the CSV reader counts them (LF, CRLF or a lone CR ends a line)."""
    for chunk in raw:  # up to and including b"\n", so a CRLF is never split
        yield from chunk.splitlines(keepends=True)


def _pasted_lines(bad: list[_BadLine], bad_count: int, utf8_lines: int) -> list[Issue]:
    issues = []
    for number, start, line, err in bad:
        guess = _guess([line])
        as_what = f" (it reads as {_LEGACY[guess].split(' (')[0]}: {quoting(_near(line, err, guess))})" if guess else ""
        issues.append(
            quoted_issue(
                number,
                None,
                "not_utf8",
                (
                    f"Line {number} is not valid UTF-8: byte 0x{line[err.start]:02X} at byte offset {start + err.start}"
                    f"{as_what}. The rest of the file is UTF-8 ({utf8_lines} line{'s' if utf8_lines != 1 else ''} with"
                    " accented letters read correctly), so this line was pasted in from another program: retype its"
                    " accented letters and save the file as CSV UTF-8 again. Do not convert the whole file: that would"
                    " garble every other accented letter."
                ),
            )
        )
    if bad_count > len(bad):
        issues.append(
            Issue(
                None,
                None,
                "not_utf8",
                f"{bad_count - len(bad)} more lines are not valid UTF-8; the first {len(bad)} are named above.",
            )
        )
    return issues


def _legacy_file_message(number: int, start: int, line: bytes, err: UnicodeDecodeError, lines: list[bytes]) -> str:
    guess = _guess(lines)
    where = (
        f"Line {number} is not valid UTF-8: byte 0x{line[err.start]:02X} at byte offset {start + err.start}"
        f" (byte {err.start + 1} of the line, near {quoting(_near(line, err, guess))})."
    )
    if guess is None:
        return f"{where} {_unsure(number, line, err, lines)} {RE_SAVE}"
    return (
        f"{where} The file looks like {_LEGACY[guess]}: import it with encoding {_OPTION_NAME[guess]},"
        f" or save it as CSV UTF-8. {RE_SAVE} Or convert it: iconv -f {_ICONV_NAME[guess]} -t UTF-8 in.csv"
        " > out.csv"
    )


def _unsure(number: int, line: bytes, err: UnicodeDecodeError, lines: list[bytes]) -> str:
    """The words for a legacy file whose encoding its bytes do not make clear: which encodings were
    weighed, why others were not, and the line read each way."""
    weighed = list(_readings(lines))
    ruled_out = []
    if "cp1252" not in weighed:
        undefined = next(b for b in b"".join(lines) if b >= 0x80 and not _decodes(bytes([b]), "cp1252"))
        ruled_out.append(f"byte 0x{undefined:02X} is undefined in Windows-1252")
    if any(0x80 <= b <= 0x9F for b in b"".join(lines)):
        ruled_out.append("bytes 0x80 to 0x9F are control characters in ISO-8859-1 (Latin-1)")
    why_not = f" ({' and '.join(ruled_out)}, so the file is in neither)" if ruled_out else ""
    each_way = "; ".join(
        f"read as {_LEGACY[e].split(' (')[0]}, line {number} is {quoting(_near(line, err, e))}" for e in weighed
    )
    names = " or ".join(_OPTION_NAME[e] for e in weighed)
    which = "that reads right, import the file with encoding" if len(weighed) == 1 else "one of these reads right,"
    which += f" {names}" if len(weighed) == 1 else f" import the file with that encoding ({names})"
    return (
        f"The file is in an older encoding that its bytes do not make clear{why_not}: {each_way}. If {which};"
        " otherwise save it as CSV UTF-8 from the program that made it."
    )


def _guess(lines: list[bytes]) -> str | None:
    """The legacy encoding under which `lines` read as text, when one clearly does."""
    ranked = sorted(_readings(lines).items(), key=lambda kv: kv[1], reverse=True)
    if not ranked or ranked[0][1] < 2:
        return None
    if len(ranked) > 1 and ranked[0][1] - ranked[1][1] < _CLEAR_LEAD:
        return None
    return ranked[0][0]


def _readings(lines: list[bytes]) -> dict[str, int]:
    """How much each legacy encoding that decodes `lines` makes them look like text (see `_text_score`)."""
    scores = {}
    for encoding in _LEGACY:
        if all(_decodes(line, encoding) for line in lines):
            scores[encoding] = sum(_text_score(line.decode(encoding)) for line in lines)
    return scores


def _text_score(text: str) -> int:
    """Points for each character outside ASCII that sits in text as such characters do.

    Windows-1252 and Mac Roman put accented letters and typography at different bytes, so the wrong
    one reads `Café` as `CafÈ`, `Crème` as `Cr‡me` (a symbol inside a word) and `“Smart”` as
    `ìSmartî` (a lower-case letter before a capital): the right reading scores far higher.
    """
    score = 0
    for i, ch in enumerate(text):
        if ch.isascii():
            continue
        before, after = text[i - 1 : i] or " ", text[i + 1 : i + 2] or " "
        if ch in _TYPOGRAPHY:
            score += 2
        elif ch.isalpha():
            if not (before.isalpha() or after.isalpha()):
                continue  # a letter on its own says little
            if (ch.isupper() and before.islower()) or (ch.islower() and after.isupper()):
                score -= 2
            else:
                score += 2 if ch.islower() else 1
        elif before.isalpha() and after.isalpha():
            score -= 2
    return score


def _decodes(data: bytes, encoding: str) -> bool:
    """Whether `data` reads as text in `encoding`: it decodes, and into no lone surrogate."""
    try:
        return not has_surrogates(data.decode(encoding))
    except UnicodeError:  # UnicodeDecodeError, and the codecs that refuse with a plain UnicodeError
        return False


def has_surrogates(text: str) -> bool:
    """A lone surrogate is no character: what some codecs (UTF-7, escapes) decode broken input to."""
    return _SURROGATE.search(text) is not None


_SURROGATE = re.compile("[\ud800-\udfff]")


def _near(line: bytes, err: UnicodeDecodeError, encoding: str | None) -> str:
    around = line[max(0, err.start - 20) : err.start + 20]
    return around.decode(encoding or "utf-8", errors="replace").strip()
