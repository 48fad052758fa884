"""Loading the config: params.yaml (the composition of conf/) validated against the schema in
pipeline.config.

Stages call `load_config(argv)`; Hydra-style `key=value` overrides on the command line are
applied on top of params.yaml, and `group=option` (e.g. `model=tiny_random`) swaps a whole
config group from conf/. Unknown keys, wrong types and values outside their choices or bounds
raise HasatError naming the key, before any heavy work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, get_args

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.config import (CHOICES, CONF_DIR, CONFIG_GROUPS, PARAMS_FILE, PII_PLACEHOLDERS, HasatConfig, PiiKind,
                             check_mc_template, group_schema)
from pipeline.errors import HasatError

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
    ("serve.port", lambda v: 0 < v < 65536, "must be a port number"),
    ("serve.max_prompt_tokens", lambda v: v > 0, "must be positive"),
    ("serve.max_tokens", lambda v: v > 0, "must be positive"),
    ("serve.default_max_tokens", lambda v: v > 0, "must be positive"),
    ("serve.max_concurrency", lambda v: v > 0, "must be positive"),
    ("serve.max_batch_size", lambda v: v > 0, "must be positive"),
    ("serve.batch_wait_ms", lambda v: v >= 0, "must be 0 or more"),
)

# keys that moved: named in one line instead of "Key not in ..." (no silent second source)
MOVED = {"task.system_prompt": "data.system_prompt", "eval.mc.path": "data.benchmark"}
# mappings a command-line value replaces instead of merging into (a column mapping is one choice)
REPLACED_BY_OVERRIDE = ("data.columns",)


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
    for old, new in MOVED.items():
        if OmegaConf.select(loaded, old, default=None) is not None:
            raise HasatError(f"{path}: config key '{old}' moved to '{new}' (the domain belongs to the data config; "
                             "run `make params`)")
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


def _apply_overrides(cfg: DictConfig, overrides: List[str], conf_dir: Path) -> DictConfig:
    """Apply `key=value` and `group=option` in order. A group option replaces its whole section (its keys
    on top of the schema's defaults, not on top of the previous option's, as in Hydra's composition);
    a value for a key in REPLACED_BY_OVERRIDE replaces that mapping; any other value is merged."""
    for item in overrides:
        if item.startswith("-"):
            raise HasatError(f"unknown option '{item}': a stage takes key=value overrides, and --help")
        key, sep, value = item.partition("=")
        key = key.lstrip("+")
        if not sep or not key:
            raise HasatError(f"override '{item}': expected key=value (e.g. train.learning_rate=2e-4)")
        if key in MOVED:
            raise HasatError(f"override '{item}': config key '{key}' moved to '{MOVED[key]}' "
                             "(the domain belongs to the data config)")
        if key in CONFIG_GROUPS:
            option = _group_option(conf_dir, key, value, item)
            _replace(cfg, key, _merge(OmegaConf.structured(group_schema(key)), option[key]))
            continue
        try:
            layer = OmegaConf.from_dotlist([f"{key}={value}"])
        except OmegaConfBaseException as err:
            raise HasatError(f"override '{item}': {_one_line(err)}") from None
        if key in REPLACED_BY_OVERRIDE:
            replacement = OmegaConf.select(layer, key)
            _replace(cfg, key, OmegaConf.to_container(replacement) if isinstance(replacement, DictConfig)
                     else replacement)
        else:
            cfg = _merge(cfg, layer)
    return cfg


def _merge(*configs: Any) -> DictConfig:
    try:
        return OmegaConf.merge(*configs)
    except OmegaConfBaseException as err:
        raise HasatError(_one_line(err)) from None


def _replace(cfg: DictConfig, key: str, value: Any) -> None:
    try:
        OmegaConf.update(cfg, key, value, merge=False)
    except OmegaConfBaseException as err:
        raise HasatError(_one_line(err)) from None


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
    _check_tokenize(cfg)
    for dotted in ("train.batch_size", "train.evals_per_epoch", "train.pack_length",
                   "train.num_processes", "eval.batch_size", "eval.max_new_tokens"):
        if OmegaConf.select(cfg, dotted) <= 0:
            raise HasatError(f"config key '{dotted}': must be positive")
    for dotted, ok, must in BOUNDS:
        if not ok(OmegaConf.select(cfg, dotted)):
            raise HasatError(f"config key '{dotted}': {OmegaConf.select(cfg, dotted)} {must}")
    check_mc_template(cfg.eval.mc.template)


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


def _check_tokenize(cfg: DictConfig) -> None:
    length = cfg.tokenize.max_seq_len
    if length != "auto" and (isinstance(length, bool) or not isinstance(length, int) or length <= 0):
        raise HasatError(f"config key 'tokenize.max_seq_len': {length!r} must be a positive number of tokens or auto")
    if not 0.0 <= cfg.tokenize.max_drop_share <= 1.0:
        raise HasatError("config key 'tokenize.max_drop_share': must be between 0 and 1")


def _check_clean(cfg: DictConfig) -> None:
    c = cfg.clean
    unknown = [kind for kind in c.pii.kinds if kind not in get_args(PiiKind)]
    if unknown:
        raise HasatError(f"config key 'clean.pii.kinds': unknown kind(s) {', '.join(unknown)} "
                         f"(known: {', '.join(PII_PLACEHOLDERS)})")
    for kind in c.pii.kinds:
        if kind not in c.pii.placeholders:
            raise HasatError(f"config key 'clean.pii.placeholders': no placeholder for '{kind}'")
    for dotted in ("clean.near_duplicates.threshold", "clean.language.min_confidence",
                   "clean.language.reject_other_confidence", "clean.language.reject_below", "clean.max_reject_share"):
        if not 0.0 <= OmegaConf.select(cfg, dotted) <= 1.0:
            raise HasatError(f"config key '{dotted}': must be between 0 and 1")
    if not 8 <= c.near_duplicates.num_perm <= 1024 or c.near_duplicates.ngram < 1:
        raise HasatError("config key 'clean.near_duplicates': num_perm must be 8..1024 and ngram positive")
    if c.near_duplicates.bucket_cap < 1:
        raise HasatError("config key 'clean.near_duplicates.bucket_cap': must be at least 1")
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
    cfg = _merge(schema, _load_yaml(Path(params_file)))
    cfg = _apply_overrides(cfg, list(overrides or []), Path(conf_dir))
    _check_choices(cfg)
    return cfg  # type: ignore[return-value]  # a DictConfig typed as HasatConfig
