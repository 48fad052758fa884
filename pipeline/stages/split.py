"""Stage split: seeded train/val/test, grouped by prompt (no prompt in two splits).

    python -m pipeline.stages.split [split.test_size=0.2] [split.val_size=30]
"""

from __future__ import annotations

import logging

from pipeline import paths
from pipeline.config import HasatConfig
from pipeline.errors import HasatError
from pipeline.io import atomic_path, read_jsonl, write_json, write_jsonl
from pipeline.data.splitting import SPLITS, label_counts, leaked_prompts, split_records
from pipeline.stages._runner import StageHelp, run_stage

log = logging.getLogger("hasat")


HELP = StageHelp(
    __doc__,
    reads=[str(paths.TOKENIZED)],
    writes=[f"{paths.SPLIT_DIR}/{{train,val,test}}.jsonl", str(paths.stats("split"))],
    keys=["split.seed", "split.val_size", "split.test_size", "split.stratify"],
)


def main(cfg: HasatConfig) -> None:
    s = cfg.split
    rows = read_jsonl(paths.TOKENIZED)
    labelled = bool(rows) and all("label" in r for r in rows)
    if s.stratify == "always" and not labelled:
        raise HasatError("split.stratify=always but the rows have no 'label' field")
    stratify = labelled and s.stratify != "never"
    splits = split_records(rows, s.val_size, s.test_size, s.seed, stratify=stratify)
    leaked = leaked_prompts(splits)
    if leaked:
        raise HasatError(f"split: {leaked} prompts appear in more than one split")
    with atomic_path(paths.SPLIT_DIR) as tmp:
        tmp.mkdir()
        for name in SPLITS:
            write_jsonl(tmp / f"{name}.jsonl", splits[name])
    stats = {f"{name}_rows": len(splits[name]) for name in SPLITS}
    if stratify:
        stats["labels"] = {name: label_counts(splits[name]) for name in SPLITS}
    write_json(paths.stats("split"), {**stats, "leaked_prompts": leaked, "seed": s.seed, "stratified": stratify})
    log.info("split: train %d, val %d, test %d (no prompt shared between splits)",
             stats["train_rows"], stats["val_rows"], stats["test_rows"])


if __name__ == "__main__":
    run_stage("split", main, HELP)
