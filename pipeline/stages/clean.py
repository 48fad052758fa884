"""Stage clean: mojibake, HTML, Unicode, control characters, whitespace, KVKK masking, empty rows,
length (characters and base-model tokens), language, exact and near-duplicates, class balance.

    python -m pipeline.stages.clean [clean.language.action=flag] [clean.near_duplicates.threshold=0.9]

Every step has a switch in `clean` and its own counters in metrics/clean.json; every dropped row is
in data/rejects/clean.jsonl with its reason and source.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import OmegaConf

from pipeline.config import CleanConfig, HasatConfig
from pipeline.data.clean import check_reject_share, clean_file, lsh_bands, stats_dict
from pipeline.errors import HasatError
from pipeline.io import staged_outputs, write_json
from pipeline import paths
from pipeline.stages._runner import StageHelp, run_stage

IN = paths.INGESTED
OUT = paths.CLEANED
REJECTS = paths.rejects("clean")
STATS = paths.stats("clean")
log = logging.getLogger("hasat")


def tokenizer_file(c: CleanConfig) -> Path | None:
    if c.length.min_tokens is None and c.length.max_tokens is None:
        return None
    path = paths.BASE_MODEL / "tokenizer.json"
    if not path.is_file():
        raise HasatError(f"{path}: the token-length filter needs the base tokenizer (set clean.length.min_tokens "
                         "and max_tokens to null to switch it off)")
    return path


def summary(stats: dict) -> str:
    lines = [f"clean: {stats['rows_in']} rows in, {stats['rows_out']} out, {stats['rows_rejected']} rejected "
             f"({REJECTS})"]
    if stats["rejected_by_reason"]:
        lines.append("  rejected by reason: " + ", ".join(f"{k} {v}" for k, v in stats["rejected_by_reason"].items()))
    changed = {k: v for k, v in stats["fields_changed"].items() if v}
    if changed:
        lines.append("  fields changed: " + ", ".join(f"{k} {v}" for k, v in changed.items()))
    masked = {k: v for k, v in stats["pii_masked"].items() if v}
    if masked:
        lines.append("  personal data masked: " + ", ".join(f"{k} {v}" for k, v in masked.items()))
    if stats.get("uncertain_language"):
        lines.append(f"  language uncertain (kept, marked in meta.flags): {stats['uncertain_language']}")
    if stats.get("labels_out"):
        lines.append("  labels out: " + ", ".join(f"{k} {v}" for k, v in stats["labels_out"].items()))
    slowest = sorted(stats["steps"].items(), key=lambda kv: -kv[1]["seconds"])[:3]
    lines.append("  slowest steps: " + ", ".join(f"{k} {v['seconds']}s ({v['rows_per_s']} rows/s)"
                                                  for k, v in slowest))
    return "\n".join(lines)


HELP = StageHelp(
    __doc__,
    reads=[str(IN), f"{paths.BASE_MODEL}/ (its tokenizer counts tokens for clean.length.*_tokens)"],
    writes=[str(OUT), f"{REJECTS} (dropped rows with reason and source)", f"{STATS} (counts, per-step timings)"],
    keys=["clean.mojibake", "clean.pii.enabled", "clean.length.min_chars", "clean.length.max_tokens",
          "clean.language.enabled", "clean.language.action", "clean.language.min_confidence",
          "clean.drop_exact_duplicates", "clean.near_duplicates.enabled", "clean.near_duplicates.threshold",
          "clean.balance.method", "clean.max_reject_share", "clean.workers"],
)


def main(cfg: HasatConfig) -> None:
    c: CleanConfig = OmegaConf.to_object(cfg.clean)
    tokenizer = tokenizer_file(c)
    if not IN.is_file():
        raise HasatError(f"{IN}: file not found (has the stage that writes it run?)")
    with staged_outputs(OUT, REJECTS, STATS) as (out_tmp, rejects_tmp, stats_tmp):
        stats = clean_file(IN, out_tmp, rejects_tmp, c, tokenizer, c.workers, spill_dir=out_tmp.parent)
        check_reject_share(stats, c.max_reject_share)
        bands = lsh_bands(c.near_duplicates.threshold, c.near_duplicates.num_perm) if c.near_duplicates.enabled \
            else None
        result = stats_dict(stats, c, bands)
        write_json(stats_tmp, result)
    log.info(summary(result))


if __name__ == "__main__":
    run_stage("clean", main, HELP)
