"""The search's own schema (conf/search/*.yaml, `search=<option>`, `search.*` overrides): not part
of params.yaml, since no stage reads it, so it lives with the search, not in pipeline/config.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, get_args

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.config import CONF_DIR, HasatConfig, choice, choices_of, flatten
from pipeline.config_loader import _load_yaml, _one_line
from pipeline.errors import HasatError

SearchParamType = Literal["float", "int", "categorical"]
SearchSampler = Literal["tpe", "random"]
SearchPruner = Literal["median", "none"]


@dataclass
class SearchParam:
    """One dimension of a hyperparameter search: the config key it sets and its range or choices."""
    key: str = MISSING  # a pipeline key (train.learning_rate) or the `train` group (full | lora)
    type: str = choice(SearchParamType, "float")
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None
    choices: Optional[List[Any]] = None  # categorical: numbers, strings, booleans or lists (target modules)


def _default_space() -> Dict[str, SearchParam]:
    return {"learning_rate": SearchParam("train.learning_rate", "float", 1e-4, 3e-3, log=True),
            "lora_r": SearchParam("train.lora.r", "categorical", choices=[8, 16, 32]),
            "lora_alpha": SearchParam("train.lora.alpha", "categorical", choices=[16, 32, 64]),
            "lora_dropout": SearchParam("train.lora.dropout", "float", 0.0, 0.2),
            "warmup_ratio": SearchParam("train.warmup_ratio", "float", 0.0, 0.2)}


@dataclass
class SearchConfig:
    """`python -m pipeline.search`: conf/search/*.yaml (not part of params.yaml: no stage reads it)."""
    study_name: str = "hasat"
    storage: Optional[str] = None  # null: sqlite optuna.db at the repository root; any SQLAlchemy URL
    n_trials: int = 10  # trials this invocation starts (a resumed study adds them; 0: only report)
    timeout: Optional[float] = None  # seconds; no trial starts after it
    sampler: str = choice(SearchSampler, "tpe")
    sampler_startup_trials: int = 4  # random trials before TPE models the results
    seed: int = 42
    pruner: str = choice(SearchPruner, "median")
    prune_after_trials: int = 2  # trials that report in full before any is pruned
    prune_warmup_steps: int = 0  # optimiser steps before a trial can be pruned
    enqueue_defaults: bool = True  # the first trial runs the current settings (the baseline to beat)
    overrides: List[str] = field(default_factory=list)  # fixed for every trial and both scoring runs
    score_best: bool = True  # run up to evaluate (test split) for the best trial and the defaults
    push: Optional[str] = None  # a git remote: `dvc exp push` each finished trial and scoring run to it
    space: Dict[str, SearchParam] = field(default_factory=_default_space)


SEARCH_CHOICES = choices_of(SearchConfig)  # relative to `search.`; each space dimension's `type` too


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
