"""Sequence lengths that fit the data: the token-length distribution of every row before the length
limit, the limit that keeps a share of the rows (`tokenize.max_seq_len: auto`), and a stop when the
configured limit would drop more rows than `tokenize.max_drop_share` allows.
"""

from __future__ import annotations

import math
import statistics
from typing import Optional, Union

from pipeline.errors import HasatError

AUTO = "auto"


def length_stats(lengths: list[int]) -> dict:
    """Total, mean and nearest-rank percentiles: p95 is the length 95% of the rows fit in."""
    if not lengths:
        return {}
    return {
        "tokens_total": sum(lengths),
        "tokens_mean": round(statistics.fmean(lengths), 1),
        "tokens_p50": length_keeping(lengths, 0.5),
        "tokens_p95": length_keeping(lengths, 0.95),
        "tokens_max": max(lengths),
    }


def length_keeping(lengths: list[int], share: float) -> int:
    """The smallest length that at least `share` of the rows fit in (0 for no rows)."""
    if not lengths:
        return 0
    ordered = sorted(lengths)
    keep = min(len(ordered), max(1, math.ceil(round(share * len(ordered), 9))))
    return ordered[keep - 1]


def resolve_max_seq_len(setting: Union[int, str], lengths: list[int], max_drop_share: float,
                        context_length: Optional[int]) -> int:
    """`tokenize.max_seq_len` as a number: as configured, or for `auto` the length that keeps
    1 - max_drop_share of the rows, capped by the model's context length."""
    if setting != AUTO:
        return int(setting)
    fits = length_keeping(lengths, 1.0 - max_drop_share) or context_length or 1
    return min(fits, context_length) if context_length else fits


def check_drop_share(dropped: int, lengths: list[int], max_seq_len: int, max_drop_share: float,
                     context_length: Optional[int]) -> None:
    """Stop, in one line, when the length limit drops more than `max_drop_share` of the rows."""
    total = len(lengths)
    if not total or dropped / total <= max_drop_share:
        return
    keep = f"{1 - max_drop_share:.0%}"
    fits = length_keeping(lengths, 1.0 - max_drop_share)
    if context_length and fits > context_length:
        hint = (f"keeping {keep} of them needs {fits} tokens, more than the model's context of {context_length}: "
                "shorten the rows (clean.length.max_tokens) or set tokenize.truncation=truncate")
    else:
        hint = f"tokenize.max_seq_len={fits} keeps {keep} of them (or set tokenize.max_seq_len=auto)"
    raise HasatError(f"tokenize: {dropped} of {total} rows ({dropped / total:.1%}) are longer than "
                     f"tokenize.max_seq_len={max_seq_len} and would be dropped, more than "
                     f"tokenize.max_drop_share={max_drop_share:.0%}; {hint}")


def length_report(lengths: list[int], setting: Union[int, str], max_seq_len: int, dropped: int, truncated: int,
                  max_drop_share: float, context_length: Optional[int]) -> dict:
    """The stats of every row before the length limit, what the limit did to them, and the choice."""
    total = max(1, len(lengths))
    return {"max_seq_len": max_seq_len, "max_seq_len_setting": str(setting), "context_length": context_length,
            "all_rows": {"rows": len(lengths), **length_stats(lengths)},
            "share_dropped_too_long": round(dropped / total, 4), "share_truncated": round(truncated / total, 4),
            "max_drop_share": max_drop_share,
            "max_seq_len_keeping": {"share": round(1 - max_drop_share, 4),
                                    "tokens": length_keeping(lengths, 1.0 - max_drop_share)}}


def length_summary(report: dict) -> str:
    """One phrase for the stage's log line."""
    every = report["all_rows"]
    if not every.get("tokens_max"):
        return "no rows"
    auto = " (auto)" if report["max_seq_len_setting"] == AUTO else ""
    keeping = report["max_seq_len_keeping"]
    return (f"all {every['rows']} rows p50 {every['tokens_p50']} / p95 {every['tokens_p95']} / max "
            f"{every['tokens_max']} tokens; max_seq_len {report['max_seq_len']}{auto} drops "
            f"{report['share_dropped_too_long']:.1%}, truncates {report['share_truncated']:.1%} "
            f"({keeping['tokens']} tokens keep {keeping['share']:.0%})")
