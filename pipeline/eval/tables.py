"""Plain-text tables and their cells: scores with intervals and the verdict of a paired delta.
Both the generation table (`report`) and the classification table use them."""

from __future__ import annotations


def verdict(delta_ci: dict | None, lower_is_better: bool = False) -> str:
    if not delta_ci:
        return ""
    low, high = delta_ci["low"], delta_ci["high"]
    if low <= 0 <= high:
        return "n.s."
    return "better" if (low > 0) != lower_is_better else "worse"


def format_cell(value: float, ci: dict | None = None, signed: bool = False) -> str:
    """'12.34 [10.00, 14.50]' (signed: '+1.23 [-0.50, +2.00]')."""
    fmt = "{:+.2f}" if signed else "{:.2f}"
    text = fmt.format(value)
    if ci:
        text += f" [{fmt.format(ci['low'])}, {fmt.format(ci['high'])}]"
    return text


def text_table(rows: list[tuple[str, ...]], rules_after: tuple[int, ...]) -> list[str]:
    """Aligned lines: first column left, the others right; a rule under each row in `rules_after`."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(row, widths))).rstrip())
        if n in rules_after:
            lines.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
    return lines
