"""Loading the config: params.yaml (the composition of conf/) validated against the schema in
pipeline.config.

Stages call `load_config(argv)`; Hydra-style `key=value` overrides on the command line are
applied on top of params.yaml, and `group=option` (e.g. `model=tiny_random`) swaps a whole
config group from conf/. Unknown keys, wrong types and values outside their choices or bounds
raise HasatError naming the key, before any heavy work.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, get_args

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.config import (CHOICES, CONF_DIR, CONFIG_GROUPS, PARAMS_FILE, PII_PLACEHOLDERS, HasatConfig, PiiKind,
                             SearchConfig, SEARCH_CHOICES, SearchParamType, check_mc_template, flatten)
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


def _check_clean(cfg: DictConfig) -> None:
    c = cfg.clean
    unknown = [kind for kind in c.pii.kinds if kind not in get_args(PiiKind)]
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


SEARCH_GROUP = "search"
# keys a search must not vary: they change the validation rows or tokens, or do not affect training
SEARCH_FIXED = ("data.", "clean.", "tokenize.", "split.", "model.", "seed", "task.kind", "eval.", "export.", "mlflow.")


def load_search_config(overrides: Optional[List[str]] = None, conf_dir: str | Path = CONF_DIR) -> SearchConfig:
    """conf/search/<option>.yaml (`search=<option>`, default: default) + `search.*` overrides
    (`~search.space.<name>` drops a dimension), validated. An option's space replaces the default's."""
    items = list(overrides or [])
    option = next((i.partition("=")[2] for i in items if i.partition("=")[0] == SEARCH_GROUP), "default")
    path = Path(conf_dir) / SEARCH_GROUP / f"{option}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise HasatError(f"override 'search={option}': no config '{option}' in group 'search' "
                         f"(known: {', '.join(known)})")
    schema = OmegaConf.structured(SearchConfig)
    schema.space = {}
    layers: list = [OmegaConf.create({"search": _load_yaml(path)})]
    drop = []
    for item in items:
        if item.partition("=")[0] == SEARCH_GROUP:
            continue
        if not item.startswith(("search.", "~search.", "+search.")):
            raise HasatError(f"override '{item}': search overrides start with 'search.' (e.g. search.n_trials=20)")
        if item.startswith("~"):
            drop.append(item[len("~search."):].split("=")[0])
            continue
        try:
            layers.append(OmegaConf.from_dotlist([item.lstrip("+")]))
        except OmegaConfBaseException as err:
            raise HasatError(f"override '{item}': {_one_line(err)}") from None
    try:
        cfg = OmegaConf.merge({"search": schema}, *layers).search
        for dotted in drop:
            parent, _, name = dotted.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            if node is None or name not in node:
                raise HasatError(f"override '~search.{dotted}': no such key")
            del node[name]
    except OmegaConfBaseException as err:
        raise HasatError(_one_line(err)) from None
    _check_search(cfg)
    return cfg  # type: ignore[return-value]


def _check_search(cfg: DictConfig) -> None:
    for dotted, allowed in SEARCH_CHOICES.items():
        value = OmegaConf.select(cfg, dotted)
        if value not in allowed:
            raise HasatError(f"config key 'search.{dotted}': '{value}' is not one of {', '.join(allowed)}")
    if not cfg.space:
        raise HasatError("config key 'search.space': empty; name at least one key to search")
    if cfg.n_trials < 0 or (cfg.timeout is not None and cfg.timeout <= 0):
        raise HasatError("config keys 'search.n_trials' / 'search.timeout': 0 or more trials, a positive timeout")
    known = set(flatten(OmegaConf.structured(HasatConfig))) | {"train"}
    for name, param in cfg.space.items():
        where = f"config key 'search.space.{name}'"
        if param.type not in get_args(SearchParamType):
            allowed = ", ".join(get_args(SearchParamType))
            raise HasatError(f"config key 'search.space.{name}.type': '{param.type}' is not one of {allowed}")
        if param.key not in known:
            raise HasatError(f"{where}: '{param.key}' is not a pipeline config key (e.g. train.learning_rate)")
        if param.key.startswith(SEARCH_FIXED):
            raise HasatError(f"{where}: '{param.key}' must not vary in a search (it changes the validation split "
                             "or does not affect training)")
        if param.type == "categorical":
            if not param.choices:
                raise HasatError(f"{where}: a categorical dimension needs choices")
        elif param.low is None or param.high is None or not param.low < param.high:
            raise HasatError(f"{where}: a {param.type} range needs low < high")
        elif param.log and param.low <= 0:
            raise HasatError(f"{where}: a log-scale range needs low > 0")
        elif param.log and param.step is not None:
            raise HasatError(f"{where}: log and step cannot be combined")
