"""Stage ingest: raw data (JSONL, JSON, CSV/TSV, Parquet, HF datasets; any encoding) -> canonical records.

    python -m pipeline.stages.ingest [data.path=my/folder] [data.columns.talimat=instruction]

Rows stream from every source to data/interim/ingested.jsonl or, with their reason and source,
to data/rejects/ingest.jsonl; metrics/ingest.json counts them per file and per reason.
"""

from __future__ import annotations

import logging

from omegaconf import OmegaConf

from pipeline.config import DataConfig, HasatConfig, SourceConfig
from pipeline.data.ingest import IngestStats, ingest_stream
from pipeline.data.rejects import rejects_header
from pipeline.errors import HasatError
from pipeline.io import JsonlWriter, staged_outputs, write_json
from pipeline import paths
from pipeline.stages._runner import StageHelp, run_stage

OUT = paths.INGESTED
REJECTS = paths.rejects("ingest")
STATS = paths.stats("ingest")
log = logging.getLogger("hasat")


def sources_of(data: DataConfig) -> tuple[SourceConfig, list[SourceConfig]]:
    """(defaults for files found under data.path, the listed sources) as plain values."""
    plain = OmegaConf.to_container(data, resolve=True) if OmegaConf.is_config(data) else dict(data)
    defaults = SourceConfig(path=plain["path"], format=plain["format"], schema=plain["schema"],
                            encoding=plain["encoding"], columns=dict(plain["columns"]))
    listed = []
    for source in plain["sources"]:  # a source's `auto` and its columns fall back on the data-level values
        inherited = {key: plain[key] for key in ("format", "schema", "encoding") if source.get(key) == "auto"}
        columns = {**plain["columns"], **(source.get("columns") or {})}
        listed.append(SourceConfig(**{**source, **inherited, "columns": columns}))
    return defaults, listed


def stats_dict(stats: IngestStats) -> dict:
    totals = stats.totals()
    return {
        "rows_read": totals["read"], "rows_kept": totals["kept"], "rows_rejected": totals["rejected"],
        "rows_sampled_out": totals["sampled_out"], "rows_added_by_sampling": totals["copies_added"],
        "rows_written": totals["kept"] + totals["copies_added"], "files": len(stats.files),
        "rejected_by_reason": dict(sorted(stats.reasons().items())),
        "by_source": {name: {"read": s.read, "kept": s.kept, "rejected": s.rejected, "sampled_out": s.sampled_out,
                             "copies_added": s.copies_added, "weight": s.weight}
                      for name, s in stats.files.items()},
        "rows_read_by_file": {name: s.read for name, s in stats.files.items()},
        "encoding_by_file": {name: s.encoding for name, s in stats.files.items()},
        "format_by_file": {name: s.format for name, s in stats.files.items()},
        "schema_by_file": {name: s.schema for name, s in stats.files.items()},
        "links": stats.links.counts(),  # symbolic links skipped: loops, dangling, second paths to a file
    }


def summary(stats: dict) -> str:
    lines = [f"ingest: {stats['rows_read']} rows read from {stats['files']} file(s): {stats['rows_kept']} kept, "
             f"{stats['rows_rejected']} rejected ({REJECTS})"]
    for name, s in stats["by_source"].items():
        extra = f", {s['sampled_out']} sampled out" if s["sampled_out"] else ""
        extra += f", {s['copies_added']} copies added (weight {s['weight']})" if s["copies_added"] else ""
        lines.append(f"  {name} [{stats['format_by_file'][name]}, {stats['encoding_by_file'][name]}, "
                     f"{stats['schema_by_file'][name]}]: {s['read']} read, {s['kept']} kept, {s['rejected']} rejected"
                     f"{extra}")
    if stats["rejected_by_reason"]:
        lines.append("  rejected by reason: " + ", ".join(f"{k} {v}" for k, v in stats["rejected_by_reason"].items()))
    if any(stats["links"].values()):
        lines.append("  symbolic links skipped: " + ", ".join(f"{k} {v}" for k, v in stats["links"].items() if v))
    return "\n".join(lines)


HELP = StageHelp(
    __doc__,
    reads=["data.path (a file or folder; data.sources lists several with their own settings)"],
    writes=[f"{OUT} (canonical records)", f"{REJECTS} (dropped rows with reason and file:line)", str(STATS)],
    keys=["data.name", "data.path", "data.format", "data.schema", "data.encoding", "data.columns", "data.sources",
          "data.max_reject_share"],
)


def main(cfg: HasatConfig) -> None:
    defaults, sources = sources_of(cfg.data)
    with staged_outputs(OUT, REJECTS, STATS) as (out_tmp, rejects_tmp, stats_tmp):
        with JsonlWriter(out_tmp) as out, JsonlWriter(rejects_tmp) as rejects:
            rejects.write(rejects_header("ingest"))
            stats = ingest_stream(cfg.data.path, sources, defaults, out.write, rejects.write,
                                  cfg.data.sample_seed, cfg.data.max_reject_share)
        result = stats_dict(stats)
        if result["rows_read"] != result["rows_kept"] + result["rows_rejected"]:
            raise HasatError(f"ingest: accounting is off: {result['rows_read']} read != {result['rows_kept']} kept "
                             f"+ {result['rows_rejected']} rejected (a bug; please report it)")
        if out.count != result["rows_written"] or rejects.count - 1 != result["rows_rejected"]:  # - header
            raise HasatError("ingest: rows written do not match the counts (a bug; please report it)")
        write_json(stats_tmp, result)
    log.info(summary(result))


if __name__ == "__main__":
    run_stage("ingest", main, HELP)
