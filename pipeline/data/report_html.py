"""The data report as one self-contained HTML file (inline SVG charts, no scripts, no CDN): rows per
stage and per source, rejects by reason with examples, token lengths before and after the length
filter, languages and duplicates, tokenizer fertility. Every piece of text from the data is escaped."""

from __future__ import annotations

from html import escape
from typing import Optional, Sequence

from pipeline.data.report import DataReport

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; margin: 2rem auto; max-width: 72rem;
       padding: 0 1rem; color: #1f2328; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #d0d7de; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .92rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: right; vertical-align: top; }
th { background: #f6f8fa; } td:first-child, th:first-child { text-align: left; }
.headline { font-size: 1.05rem; padding: .6rem .8rem; background: #f6f8fa; border-left: 4px solid #2a7ab0; }
.note { color: #57606a; font-size: .88rem; } .warn { color: #c62828; }
.raw { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: .8rem; background: #f6f8fa;
       padding: .3rem .5rem; border-radius: 4px; margin: .2rem 0 .5rem; word-break: break-all; }
details { margin: .3rem 0 .6rem; } summary { cursor: pointer; }
svg text { font-family: inherit; font-size: 11px; fill: #1f2328; }
"""
COLORS = ("#2a7ab0", "#e07b39", "#1a7f37", "#8250df")


def _n(value) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else escape(str(value))


def table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_n(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def bars_svg(items: Sequence[tuple[str, int]], width: int = 640) -> str:
    """Horizontal bars, one per (label, value)."""
    if not items:
        return ""
    top, row_h, label_w = max(v for _, v in items) or 1, 22, 190
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{row_h * len(items) + 6}" '
             f'role="img">']
    for i, (label, value) in enumerate(items):
        y, w = i * row_h + 3, (width - label_w - 70) * value / top
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{escape(label)}</text>'
                     f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{row_h - 6}" fill="{COLORS[0]}"/>'
                     f'<text x="{label_w + w + 4:.1f}" y="{y + 14}">{value:,}</text>')
    return "".join(parts) + "</svg>"


def histogram_svg(width_tokens: int, rows: list[dict], series: Sequence[str], width: int = 720,
                  height: int = 240, marker: Optional[int] = None) -> str:
    """Side-by-side bars per token-length bin for each series; a dashed line at `marker` (max_seq_len)."""
    if not rows:
        return ""
    left, bottom, plot_w, plot_h = 48, 34, width - 60, height - 50
    top = max(max(r[s] for s in series) for r in rows) or 1
    bin_w = plot_w / len(rows)
    bar_w = bin_w * 0.85 / len(series)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<line x1="{left}" y1="{height - bottom}" x2="{left + plot_w}" y2="{height - bottom}" stroke="#57606a"/>',
             f'<text x="6" y="16">rows (max {top:,})</text>']
    for i, row in enumerate(rows):
        for j, name in enumerate(series):
            h = plot_h * row[name] / top
            x = left + i * bin_w + j * bar_w
            parts.append(f'<rect x="{x:.1f}" y="{height - bottom - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                         f'fill="{COLORS[j]}"><title>{escape(name)}: {row[name]:,} rows with '
                         f'{row["tokens"]}-{row["tokens"] + width_tokens - 1} tokens</title></rect>')
    for i in range(0, len(rows), max(1, len(rows) // 8)):
        parts.append(f'<text x="{left + i * bin_w:.1f}" y="{height - bottom + 14}">{rows[i]["tokens"]}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.0f}" y="{height - 4}" text-anchor="middle">tokens per row '
                 f'(bins of {width_tokens})</text>')
    if marker is not None:
        x = left + plot_w * marker / (len(rows) * width_tokens)
        parts.append(f'<line x1="{x:.1f}" y1="{height - bottom}" x2="{x:.1f}" y2="20" stroke="#c62828" '
                     f'stroke-dasharray="4 3"/><text x="{x + 3:.1f}" y="30" fill="#c62828">max_seq_len {marker}</text>')
    for j, name in enumerate(series):
        parts.append(f'<rect x="{width - 190}" y="{8 + j * 16}" width="10" height="10" fill="{COLORS[j]}"/>'
                     f'<text x="{width - 175}" y="{17 + j * 16}">{escape(name)}</text>')
    return "".join(parts) + "</svg>"


def stage_rows(report: DataReport) -> list[tuple[str, int]]:
    def stat(stage: str, key: str):
        return report.stats.get(stage, {}).get(key)

    steps = [("ingest: read", stat("ingest", "rows_read")), ("ingest: kept", stat("ingest", "rows_kept")),
             ("ingest: written", stat("ingest", "rows_written")), ("clean: out", stat("clean", "rows_out")),
             ("tokenize: out", stat("tokenize", "rows_out"))]
    steps += [(f"split: {part}", stat("split", f"{part}_rows")) for part in ("train", "val", "test")]
    return [(label, value) for label, value in steps if isinstance(value, int)]


def source_rows(report: DataReport) -> list[list]:
    ingest = report.stats.get("ingest", {}).get("by_source", {})
    clean = report.stats.get("clean", {}).get("by_source", {})
    rows = []
    for name in sorted(set(ingest) | set(clean) | set(report.tokens)):
        i, c, t = ingest.get(name, {}), clean.get(name, {}), report.tokens.get(name)
        fertility = round(t.fertility_tokens / t.fertility_words, 2) if t and t.fertility_words else None
        rows.append([name, i.get("read"), i.get("rejected"), c.get("in"), c.get("kept"), t.rows if t else None,
                     t.truncated if t else None, round(t.tokens / t.rows, 1) if t and t.rows else None, fertility])
    return rows


def rejects_section(report: DataReport) -> str:
    parts = []
    for stage, found in report.rejects.items():
        codes = report.stats.get(stage, {}).get("rejected_by_reason") or {}
        parts.append(f"<h3>{escape(stage)}: {found.total:,} rows rejected</h3>")
        if codes:
            parts.append(bars_svg(sorted(codes.items(), key=lambda kv: -kv[1])))
        if not found.total:
            parts.append('<p class="note">none</p>')
        for group in found.groups.values():
            examples = "".join(
                f'<div><b>{escape(e["source"])}</b>: {escape(e["reason"])}'
                f'<div class="raw">{escape(e["raw"])}</div>'
                + (f'<span class="note">raw row: {e["raw_chars"]:,} characters</span>' if isinstance(
                    e["raw_chars"], int) and e["raw_chars"] > len(e["raw"]) else "") + "</div>"
                for e in group.examples)
            parts.append(f"<details><summary>{escape(group.reason)} — {group.count:,} rows "
                         f"({len(group.examples)} shown)</summary>{examples}</details>")
    return "".join(parts)


def lengths_section(report: DataReport, bin_width: int, rows: list[dict]) -> str:
    tok = report.stats.get("tokenize", {})
    max_seq_len = tok.get("max_seq_len") if isinstance(tok.get("max_seq_len"), int) else None
    n_all, n_kept = len(report.lengths_all), len(report.lengths_kept)
    parts = [histogram_svg(bin_width, rows, ("all rows", "kept rows"), marker=max_seq_len)]
    if n_all:
        parts.append(f"<p>{n_all:,} rows reached tokenize, {n_kept:,} were kept "
                     f"({100 * (n_all - n_kept) / n_all:.1f}% dropped as too long).</p>")
    if not report.lengths_all_exact:
        parts.append('<p class="note">Truncated rows count at max_seq_len in "all rows": their full length is '
                     'not kept.</p>')
    scalars = [[k, v] for k, v in tok.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)]
    return "".join(parts) + "<p>metrics/tokenize.json:</p>" + table(["key", "value"], scalars)


def language_section(report: DataReport) -> str:
    clean = report.stats.get("clean", {})
    reasons = clean.get("rejected_by_reason") or {}
    rows = [["rejected: another language", reasons.get("wrong_language", 0)],
            ["flagged, kept (clean.language.action=flag)", clean.get("flagged_language", 0)],
            ["exact duplicates removed", reasons.get("exact_duplicate", 0)],
            ["near duplicates removed", reasons.get("near_duplicate", 0)]]
    by_language = report.rejects.get("clean").languages if "clean" in report.rejects else {}
    detail = [[f"rejected as {lang}", n] for lang, n in by_language.most_common()]
    detail += [[f"flagged as {lang}", n] for lang, n in report.flagged_languages.most_common()]
    return table(["", "rows"], rows) + (table(["detected language", "rows"], detail) if detail else "")


def render(report: DataReport, bin_width: int, hist_rows: list[dict], title: str = "hasat data report") -> str:
    tok, ingest = report.stats.get("tokenize", {}), report.stats.get("ingest", {})
    fertility = tok.get("fertility_tokens_per_word")
    read, out = ingest.get("rows_read"), tok.get("rows_out")
    headline = (f"{_n(read)} rows read → {_n(out)} training examples"
                + (f"; {fertility} tokens per word" if fertility is not None else "")
                + (f"; p95 {tok['tokens_p95']} tokens" if "tokens_p95" in tok else ""))
    sections = [
        ("Rows per stage", bars_svg(stage_rows(report)) or '<p class="note">no stage stats found</p>'),
        ("Rows per source", table(["source", "ingest read", "ingest rejected", "clean in", "clean kept",
                                   "tokenized", "truncated", "tokens/row", "tokens/word"], source_rows(report))),
        ("Rejects by reason", rejects_section(report)),
        ("Token lengths before and after the length filter", lengths_section(report, bin_width, hist_rows)),
        ("Languages and duplicates", language_section(report)),
        ("Tokenizer fertility", f"<p>{_n(fertility)} tokens per word over all answers (metrics/tokenize.json); "
                                "per source in the table above (answer tokens over the reference's words, or "
                                "text tokens over words for classification).</p>"),
    ]
    body = "".join(f"<h2>{escape(name)}</h2>{html}" for name, html in sections)
    return (f'<!DOCTYPE html><html lang="tr"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>"
            f'<p class="headline">{escape(headline)}</p>{body}</body></html>\n')
