"""A row as a reader hands it over: where it came from, what it parsed to (or why it did not), its raw text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from pipeline.data.encoding import SURROGATE_RE


class RowError(ValueError):
    """A row that cannot become a record: `code` groups it in the stats, the message is the reason."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class Row:
    """`source` is `file:line`, `file:item N` or `file:row N`; a row the reader could not parse has
    `error` set (and no `item`), and still ends in the rejects with its `raw` text."""

    source: str
    item: Any = None
    raw: str = ""
    error: Optional[RowError] = None


def utf8_or_none(text: str) -> Optional[bytes]:
    """`text` as UTF-8, or None when it holds a surrogate (the only code points strict UTF-8 refuses):
    one C pass, several times faster than searching for them with a regex."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return None


def safe_raw(text: str) -> str:
    """Raw text for the rejects file: undecodable bytes and lone surrogates written as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8") if SURROGATE_RE.search(text) else text
