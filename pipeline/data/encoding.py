"""Find out how a text file is encoded and open it as a stream of text.

Turkish data arrives as UTF-8 (with or without BOM), UTF-16 (Excel's "Unicode text"), or in the
legacy single-byte code pages Windows-1254 / ISO-8859-9. `detect_encoding` reads the file once in
chunks (memory stays flat): a BOM decides at once; otherwise a file whose non-ASCII bytes form
valid UTF-8 is UTF-8 (bad bytes in it, fewer than the good ones, are row errors, not a reason to re-read the whole file
as a code page), and anything else is scored over the candidates' decodings of its byte histogram,
preferring the one that yields Turkish letters (`ğ ı ş İ` rather than `ð ý þ Ý`).

Bytes that do not decode become lone surrogates U+DC00..U+DCFF (error handler `hasat-bad-bytes`),
so a reader can quarantine exactly the rows that hold them and name the byte.
"""

from __future__ import annotations

import codecs
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from pipeline.errors import HasatError

HEAD_BYTES = 1 << 16
CHUNK_BYTES = 1 << 20
BAD_BYTES_HANDLER = "hasat-bad-bytes"
BAD_BYTE_RE = re.compile("[\udc00-\udcff]")
SURROGATE_RE = re.compile("[\ud800-\udfff]")

BOMS = (  # longest first: the UTF-32 LE BOM starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)
MAGIC = (  # files people drop into a data folder by mistake
    (b"PK\x03\x04", "a ZIP archive: an .xlsx/.docx file?"), (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "gzip-compressed (decompress it first)"), (b"BZh", "bzip2-compressed"),
    (b"\x7fELF", "an executable"), (b"PAR1", "a Parquet file (use format parquet)"),
    (b"SQLite format 3\x00", "an SQLite database"), (b"\xd0\xcf\x11\xe0", "an old Office file (.xls/.doc)"),
)
LEGACY_CANDIDATES = ("cp1254", "iso8859-9", "cp1252", "latin-1")
REPORTED_NAME = {"cp1254": "cp1254", "iso8859-9": "iso-8859-9", "cp1252": "cp1252", "latin-1": "latin-1"}
TURKISH_LETTERS = frozenset("çÇğĞıİöÖşŞüÜâÂîÎûÛ")
IMPLAUSIBLE_IN_TURKISH = frozenset("ÐÝÞðýþ")  # what cp1254's Ğ İ Ş ğ ı ş become in Latin-1/cp1252
_CONTROL_BYTES = bytes(list(range(0x00, 0x09)) + list(range(0x0E, 0x1B)) + list(range(0x1C, 0x20)))


def _bad_bytes(err: UnicodeDecodeError) -> tuple[str, int]:
    return "".join(chr(0xDC00 + b) for b in err.object[err.start:err.end]), err.end


codecs.register_error(BAD_BYTES_HANDLER, _bad_bytes)


@dataclass(frozen=True)
class Detected:
    codec: str  # what Python decodes with
    name: str  # what the stats report
    bad_bytes: int = 0  # bytes seen that do not decode (rows holding them are rejected)


def first_bad_byte(text: str) -> str | None:
    """'byte 0xfe at column 12' for the first undecodable byte in `text`, or None."""
    match = BAD_BYTE_RE.search(text)
    if match is None:
        return None
    return f"byte 0x{ord(match.group()) - 0xDC00:02x} at column {match.start() + 1}"


def _utf16_without_bom(head: bytes) -> str | None:
    """UTF-16 text without a BOM shows NUL in every other byte (for Latin script)."""
    sample = head[: len(head) - len(head) % 2]
    if len(sample) < 8:
        return None
    even_nul = sample[0::2].count(0) / (len(sample) / 2)
    odd_nul = sample[1::2].count(0) / (len(sample) / 2)
    codec = "utf-16-le" if odd_nul > 0.4 and even_nul < 0.05 else "utf-16-be" if even_nul > 0.4 and odd_nul < 0.05 \
        else None
    if codec is None:
        return None
    text = sample.decode(codec, errors="replace")
    readable = sum(ch.isprintable() or ch in "\t\r\n" for ch in text)
    return codec if readable >= 0.95 * len(text) else None


def _binary_kind(head: bytes) -> str | None:
    for magic, kind in MAGIC:
        if head.startswith(magic):
            return kind
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    if controls and controls / len(head) > 0.05:
        return "control bytes"
    return None


def _scan_utf8(handle: BinaryIO) -> tuple[int, int, np.ndarray]:
    """(valid non-ASCII bytes, undecodable bytes, histogram of all bytes) over the whole file."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors=BAD_BYTES_HANDLER)
    valid = invalid = 0
    histogram = np.zeros(256, dtype=np.int64)
    while chunk := handle.read(CHUNK_BYTES):
        histogram += np.bincount(np.frombuffer(chunk, dtype=np.uint8), minlength=256)
        if chunk.isascii():
            continue
        text = decoder.decode(chunk)
        bad = 0 if _encodes_as_utf8(text) else len(BAD_BYTE_RE.findall(text))  # bad bytes decode to surrogates
        invalid += bad
        valid += int(np.count_nonzero(np.frombuffer(chunk, dtype=np.uint8) >= 0x80)) - bad
    invalid += len(BAD_BYTE_RE.findall(decoder.decode(b"", final=True)))  # truncated sequence at EOF
    return valid, invalid, histogram


def _encodes_as_utf8(text: str) -> bool:
    """False when `text` holds a surrogate (the only code points strict UTF-8 refuses)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _legacy_score(codec: str, histogram: np.ndarray) -> float:
    """Turkish letters the code page would produce, minus heavy penalties for impossible output."""
    score = 0.0
    for byte in range(0x80, 0x100):
        count = int(histogram[byte])
        if not count:
            continue
        try:
            char = bytes([byte]).decode(codec)
        except UnicodeDecodeError:
            score -= 10 * count  # undefined in this code page
            continue
        if char in TURKISH_LETTERS:
            score += count
        elif char in IMPLAUSIBLE_IN_TURKISH or 0x80 <= ord(char) < 0xA0:
            score -= 10 * count
    return score


def best_legacy_codec(histogram: np.ndarray) -> str:
    """The candidate code page with the best Turkish score; ties go to cp1254 (Turkish Excel)."""
    scores = {codec: _legacy_score(codec, histogram) for codec in LEGACY_CANDIDATES}
    return max(LEGACY_CANDIDATES, key=lambda codec: (scores[codec], -LEGACY_CANDIDATES.index(codec)))


def detect_encoding(path: Path, configured: str = "auto") -> Detected:
    """How `path` is encoded. Raises HasatError for an empty or binary file."""
    with open(path, "rb") as handle:
        head = handle.read(HEAD_BYTES)
        if not head:
            raise HasatError(f"{path}: file is empty")
        if configured != "auto":
            try:
                codec = codecs.lookup(configured).name
            except LookupError:
                raise HasatError(f"{path}: unknown encoding '{configured}' (config key encoding)") from None
            return Detected(codec, configured)
        for bom, codec in BOMS:
            if head.startswith(bom):
                if not head[len(bom):].decode(codec.replace("-sig", ""), errors="ignore").strip("\x00 \t\r\n"):
                    if len(head) < HEAD_BYTES:
                        raise HasatError(f"{path}: file is empty")
                return Detected(codec, codec)
        utf16 = _utf16_without_bom(head)
        if utf16:
            return Detected(utf16, utf16)
        kind = _binary_kind(head)
        if kind:
            raise HasatError(f"{path}: looks like a binary file ({kind}), not text data")
        if not head.strip() and len(head) < HEAD_BYTES:
            raise HasatError(f"{path}: file is empty")
        handle.seek(0)
        valid, invalid, histogram = _scan_utf8(handle)
    if invalid == 0 or valid >= invalid:
        return Detected("utf-8", "utf-8", invalid)
    codec = best_legacy_codec(histogram)
    return Detected(codec, REPORTED_NAME[codec])


def open_text(path: Path, detected: Detected) -> io.TextIOWrapper:
    """A text stream with newlines kept as they are (the CSV reader needs that); bad bytes marked."""
    return io.TextIOWrapper(open(path, "rb"), encoding=detected.codec, errors=BAD_BYTES_HANDLER, newline="")
