"""What the data stages do with a row they drop: a reject record {"source", "reason", "raw"}, and a stop
when too large a share of the input is dropped (then the input is likely wrong, not its rows)."""

from __future__ import annotations

from typing import Any, Callable

from pipeline.errors import HasatError


def reject_record(source: str, reason: str, raw: Any) -> dict:
    """One line of a rejects file; `source` names the input row (`file:line`, `file:row N`)."""
    return {"source": source, "reason": reason, "raw": raw}


def check_reject_share(where: str, rejected: int, total: int, max_share: float, setting: str,
                       most_often: Callable[[], str]) -> None:
    """Raise when more than `max_share` of `total` (> 0) rows were rejected. `setting` is the config key
    the message names; `most_often` (called only then) says which reasons dominate."""
    share = rejected / total
    if share > max_share:
        raise HasatError(f"{where}: {rejected} of {total} rows rejected ({share:.0%} > {setting} "
                         f"{max_share:.0%}); {most_often()}")
