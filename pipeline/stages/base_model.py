"""Stage base_model: materialise the base model + tokenizer as plain HF files, once.

    python -m pipeline.stages.base_model [model=tiny_random] [model.location=...]
"""

from __future__ import annotations

import logging

from pipeline import paths
from pipeline.config import HasatConfig
from pipeline.io import atomic_path, write_json
from pipeline.train.modeling import load_base, notice_files, save_model_folder
from pipeline.stages._runner import StageHelp, run_stage

log = logging.getLogger("hasat")


HELP = StageHelp(
    __doc__,
    reads=["the base model named by model.* (a GGUF package, an HF folder or hub id, or random_init)",
           "model_assets/ (licence notices, chat templates named by the model profile)"],
    writes=[f"{paths.BASE_MODEL}/ (plain HF safetensors + tokenizer + licence notices)",
            str(paths.stats("base_model"))],
    keys=["model.name", "model.source", "model.location", "model.gguf_file", "model.dtype", "model.license", "seed"],
)


def main(cfg: HasatConfig) -> None:
    log.info("base_model: loading %s (%s from %s)", cfg.model.name, cfg.model.source, cfg.model.location)
    notices = notice_files(cfg.model)  # before the slow load: a missing file fails at once
    tokenizer, model = load_base(cfg.model, cfg.seed)
    with atomic_path(paths.BASE_MODEL) as tmp:
        save_model_folder(tokenizer, model, tmp, notices)
    stats = {"model": cfg.model.name, "source": cfg.model.source, "license": cfg.model.license,
             "notices": [f.name for f in notices],
             "parameters": sum(p.numel() for p in model.parameters()),
             "vocab_size": len(tokenizer), "pad_equals_eos": tokenizer.pad_token_id == tokenizer.eos_token_id}
    write_json(paths.stats("base_model"), stats)
    log.info("base_model: %s parameters, vocab %s -> %s", f"{stats['parameters']:,}", stats["vocab_size"], paths.BASE_MODEL)


if __name__ == "__main__":
    run_stage("base_model", main, HELP)
