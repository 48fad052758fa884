"""Stage data_report: one HTML page about the data a person would rather look at than read: rows per
stage and per source, rejects by reason with a few examples each, token lengths before and after the
length filter, languages and duplicates, tokenizer fertility. Reads only what the data stages wrote,
so a change to the report re-runs this stage (and export, which logs it to the model's MLflow run),
never the training.

    python -m pipeline.stages.data_report        # then open reports/data/report.html
"""

from __future__ import annotations

import csv
import logging

from pipeline import paths
from pipeline.config import HasatConfig
from pipeline.data.report import collect, histogram
from pipeline.data.report_html import render
from pipeline.io import atomic_path
from pipeline.stages._runner import StageHelp, run_stage

log = logging.getLogger("hasat")
STATS = {stage: paths.stats(stage) for stage in ("ingest", "clean", "tokenize", "split")}
REJECTS = {stage: paths.rejects(stage) for stage in ("ingest", "clean", "tokenize")}
HELP = StageHelp(
    __doc__,
    reads=[*map(str, STATS.values()), *map(str, REJECTS.values()), str(paths.CLEANED), str(paths.TOKENIZED)],
    writes=[f"{paths.DATA_REPORT} (self-contained HTML)",
            f"{paths.TOKEN_LENGTHS} (dvc plots: rows per token-length bin, all rows vs kept rows)"],
    keys=["data.name"],
)


def main(cfg: HasatConfig) -> None:
    report = collect(STATS, REJECTS, paths.TOKENIZED, paths.CLEANED)
    bin_width, rows = histogram({"all rows": report.lengths_all, "kept rows": report.lengths_kept})
    with atomic_path(paths.TOKEN_LENGTHS) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["tokens", "all_rows", "kept_rows"])
        writer.writerows([r["tokens"], r["all rows"], r["kept rows"]] for r in rows)
    with atomic_path(paths.DATA_REPORT) as tmp:
        tmp.write_text(render(report, bin_width, rows, title=f"hasat data report: {cfg.data.name}"), encoding="utf-8")
    log.info("data_report: %s (%d rows tokenized from %d sources, %d rejects)", paths.DATA_REPORT,
             len(report.lengths_kept), len(report.tokens), sum(r.total for r in report.rejects.values()))


if __name__ == "__main__":
    run_stage("data_report", main, HELP)
