"""A model to serve or to compare: a model folder (models/export), or a registered MLflow model
(`champion`, `challenger`, `models:/<name>@<alias>`), fetched once into .hasat/registry/.

What the model needs besides its weights (task kind, prompt format, system prompt) travels with
it: `hasat.json` in the export folder, the same dict as `metadata` in the MLflow model.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from pipeline import paths
from pipeline.config import HasatConfig
from pipeline.errors import HasatError
from pipeline.tracking import download_model, registry_name, registered_version

log = logging.getLogger("hasat")
ALIASES = ("champion", "challenger")
SERVING_INFO = "hasat.json"  # in the export folder
_MODELS_URI = re.compile(r"^models:/([^@/]+)(?:@([\w-]+)|/(\d+))$")


@dataclass
class LoadedModel:
    name: str  # the id clients ask for (`model` in a request)
    kind: str  # sft | classification
    tokenizer: Any
    model: Any
    prompt_format: str = "chat_template"
    system_prompt: Optional[str] = None
    labels: list[str] = field(default_factory=list)
    source: str = ""  # folder or models:/ URI, for the log and /v1/models
    decoding: dict = field(default_factory=dict)  # how evaluate decoded (eval.*): a request without temperature


def serving_info(cfg: HasatConfig, kind: str, labels: Optional[list[str]] = None) -> dict:
    """What export writes beside the weights (and into the MLflow model's metadata); `decoding` is the
    one evaluate measured the model with, the server's default for a request that sets no temperature."""
    decoding = {} if kind == "classification" else \
        {k: cfg.eval[k] for k in ("do_sample", "temperature", "top_p", "top_k", "repetition_penalty",
                                  "no_repeat_ngram_size")}
    return {"task": kind, "prompt_format": cfg.task.prompt_format, "system_prompt": cfg.data.system_prompt,
            "labels": list(labels or []), "model": cfg.model.name, "data": cfg.data.name, "decoding": decoding}


def registry_uri(cfg: HasatConfig, spec: str) -> Optional[str]:
    """`champion` / `challenger` -> models:/<registry name>@alias; a models:/ URI as it is; else None."""
    if spec in ALIASES:
        return f"models:/{registry_name(cfg)}@{spec}"
    if spec.startswith("models:/"):
        if not _MODELS_URI.match(spec):
            raise HasatError(f"{spec}: expected models:/<name>@<alias> or models:/<name>/<version>")
        return spec
    return None


def resolve(cfg: HasatConfig, spec: str) -> tuple[Path, str, dict]:
    """(local folder with weights and tokenizer, served name, metadata) of a folder or registry spec."""
    uri = registry_uri(cfg, spec)
    if uri is None:
        folder = Path(spec)
        if not (folder / "config.json").is_file():
            raise HasatError(f"{spec}: not a model folder (no config.json); give a folder such as "
                             f"{paths.EXPORT}, 'champion', 'challenger' or models:/<name>@<alias>")
        info_file = folder / SERVING_INFO
        info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
        return folder, folder.resolve().name, info
    name, alias, number = _MODELS_URI.match(uri).groups()
    found = _registered(cfg, name, alias or number)
    version = found["version"]
    dest = paths.REGISTRY_CACHE / name / f"{version}-{found['run_id']}"  # a re-created store reuses numbers
    if not (dest / "MLmodel").is_file():
        log.info("fetching %s (version %s) into %s", uri, version, dest)
        download_model(cfg, f"models:/{name}/{version}", dest)
    meta = (yaml.safe_load((dest / "MLmodel").read_text(encoding="utf-8")).get("metadata") or {}).get("hasat", {})
    return dest, name, {**meta, "version": version, "uri": uri}


def _registered(cfg: HasatConfig, name: str, alias_or_version: str) -> dict:
    found = registered_version(cfg, name, alias_or_version)
    if found is None:
        hint = ("run `python -m pipeline.promote` (make promote) after export" if alias_or_version == "champion"
                else "run the export stage with registry.enabled=true")
        where = f"{name}/{alias_or_version}" if alias_or_version.isdigit() else f"{name}@{alias_or_version}"
        raise HasatError(f"models:/{where}: no such registered model or alias; {hint}, or serve a folder "
                         f"(serve.model={paths.EXPORT})")
    return found


def _weights_and_tokenizer(folder: Path) -> tuple[Path, Path]:
    """An MLflow transformers model keeps the weights in model/ and the tokenizer in components/tokenizer/."""
    if (folder / "MLmodel").is_file():
        return folder / "model", folder / "components" / "tokenizer"
    return folder, folder


def load(cfg: HasatConfig, spec: str) -> LoadedModel:
    """Load what `spec` names for inference, on the GPU when there is one."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from pipeline.train.modeling import device

    folder, name, info = resolve(cfg, spec)
    weights, tokenizer_dir = _weights_and_tokenizer(folder)
    config = AutoConfig.from_pretrained(weights)
    is_classifier = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
    kind = info.get("task") or ("classification" if is_classifier else "sft")
    auto = AutoModelForSequenceClassification if kind == "classification" else AutoModelForCausalLM
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = auto.from_pretrained(weights).to(device()).eval()
    labels = [config.id2label[i] for i in sorted(config.id2label)] if kind == "classification" else []
    return LoadedModel(name=name, kind=kind, tokenizer=tokenizer, model=model,
                       prompt_format=info.get("prompt_format") or cfg.task.prompt_format,
                       system_prompt=info.get("system_prompt", cfg.data.system_prompt), labels=labels,
                       source=info.get("uri") or str(folder), decoding=dict(info.get("decoding") or {}))
