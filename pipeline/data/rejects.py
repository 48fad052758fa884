"""What the data stages do with a row they drop: a reject record {"source", "reason", "raw"}, and a stop
when too large a share of the input is dropped (then the input is likely wrong, not its rows).

A huge row keeps only a bounded prefix in the rejects file (`RAW_MAX_CHARS`), with its full length in
`raw_chars`: the row itself stays in the input file, where `source` points.

Every rejects file (data/rejects/<stage>.jsonl) starts with one header line, {"rejects_of": stage, ...},
then one line per dropped row. DVC warns about an empty output ("'data/rejects/ingest.jsonl' is
empty.") and a stage that drops nothing would write one: the header keeps the file non-empty and says
what it holds, without a made-up reject. `read_rejects` reads the rejects without it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import orjson

from pipeline.errors import HasatError

RAW_MAX_CHARS = 10_000  # of a rejected row's raw text kept in the rejects file
RAW_MIN_FIELD_CHARS = 200  # every text of a cut record keeps at least this much, so each field shows


HEADER_KEY = "rejects_of"


def rejects_header(stage: str) -> dict:
    """The first line of a stage's rejects file."""
    return {HEADER_KEY: stage, "lines": "one per row the stage dropped: source, reason, raw (a raw cut to "
                                        f"{RAW_MAX_CHARS} characters has raw_chars, its full length)"}


def iter_rejects(path: str | Path) -> Iterator[dict]:
    """The rejects of a rejects file, its header left out."""
    with Path(path).open("rb") as lines:
        for line in lines:
            if line.strip():
                row = orjson.loads(line)
                if HEADER_KEY not in row:
                    yield row


def read_rejects(path: str | Path) -> list[dict]:
    return list(iter_rejects(path))


def reject_record(source: str, reason: str, raw: Any) -> dict:
    """One line of a rejects file; `source` names the input row (`file:line`, `file:row N`)."""
    size = _chars(raw)
    if size <= RAW_MAX_CHARS:
        return {"source": source, "reason": reason, "raw": raw}
    full = len(raw) if isinstance(raw, str) else len(orjson.dumps(raw).decode())
    return {"source": source, "reason": reason, "raw": _cut(raw, [RAW_MAX_CHARS]), "raw_chars": full}


def _chars(value: Any) -> int:
    """About how many characters `value` holds (its texts and keys): cheap, no serialising."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(len(str(k)) + _chars(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sum(_chars(v) for v in value)
    return 8


def _cut(value: Any, budget: list[int]) -> Any:
    """`value` with its texts cut, in order, to what is left of the shared `budget` (a one-item list)."""
    if isinstance(value, str):
        keep = max(budget[0], RAW_MIN_FIELD_CHARS)
        budget[0] = max(budget[0] - len(value), 0)
        return value if len(value) <= keep else value[:keep]
    if isinstance(value, dict):
        return {k: _cut(v, budget) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if budget[0] <= 0:
            return [] if not value else [_cut(value[0], budget)]
        return [_cut(v, budget) for v in value]
    return value


def check_reject_share(where: str, rejected: int, total: int, max_share: float, setting: str,
                       most_often: Callable[[], str]) -> None:
    """Raise when more than `max_share` of `total` (> 0) rows were rejected. `setting` is the config key
    the message names; `most_often` (called only then) says which reasons dominate."""
    share = rejected / total
    if share > max_share:
        raise HasatError(f"{where}: {rejected} of {total} rows rejected ({share:.0%} > {setting} "
                         f"{max_share:.0%}); {most_often()}")
