"""Turkish-aware text helpers. Python's str.lower() is wrong for Turkish:
"I".lower() is "i" (should be "ı") and "İ".lower() is "i" + a combining dot (two code points).
"""

from __future__ import annotations

import re
import unicodedata

_WORD_RE = re.compile(r"\w+", re.UNICODE)
_SPACE_RE = re.compile(r"\s+")
_NON_WORD_RE = re.compile(r"\W+", re.UNICODE)
# For the fast path of normalise_for_match: every ASCII byte that is not a word character becomes a
# space; `delete` keeps only the bytes of non-ASCII characters.
_ASCII_NON_WORD_TO_SPACE = bytes(c if chr(c).isalnum() or c == 0x5F or c >= 0x80 else 0x20 for c in range(256))
_ASCII = bytes(range(0x80))


def tr_lower(text: str) -> str:
    """Lower-case the Turkish way: I→ı, İ→i, everything else as Unicode says."""
    # str.replace is ~20x faster than str.translate with a dict map on long Turkish text
    return unicodedata.normalize("NFC", text).replace("İ", "i").replace("I", "ı").lower()


def tr_upper(text: str) -> str:
    """Upper-case the Turkish way: i→İ, ı→I."""
    return unicodedata.normalize("NFC", text).replace("i", "İ").replace("ı", "I").upper()


def words(text: str) -> list[str]:
    """Turkish-lower-cased word tokens; keeps ç ğ ı ö ş ü, splits at apostrophes ("İzmir'de" → izmir, de)."""
    return _WORD_RE.findall(tr_lower(text))


def normalise_for_match(text: str) -> str:
    """The form used for exact-match and duplicate keys: NFC, Turkish lower case, no punctuation.
    Same as " ".join(words(text)) (it runs on every row in clean).

    The Unicode regex costs ~40 ns a character; when every non-ASCII character is a word character
    (Turkish letters, no typographic punctuation), bytes.translate + split give the same words
    about 4x faster. For str patterns `\\w` is `str.isalnum()` or `_`, so the check is exact."""
    lowered = tr_lower(text)
    data = lowered.encode("utf-8", "surrogatepass")
    if data.isascii() or data.translate(None, _ASCII).decode("utf-8", "surrogatepass").isalnum():
        return b" ".join(data.translate(_ASCII_NON_WORD_TO_SPACE).split()).decode("utf-8", "surrogatepass")
    return _NON_WORD_RE.sub(" ", lowered).strip()


def collapse_spaces(text: str) -> str:
    return _SPACE_RE.sub(" ", text).strip()
