"""The search space: conf/search's dimensions -> Optuna suggestions -> `-S key=value` overrides."""

from __future__ import annotations

from typing import Any, Mapping

from omegaconf import OmegaConf

from pipeline.config import HasatConfig
from pipeline.search.config import SearchParam


def choice_label(value: Any) -> Any:
    """Optuna stores numbers, strings and booleans: a list choice (target modules) becomes 'a,b'."""
    if isinstance(value, (list, tuple)) or OmegaConf.is_list(value):
        return ",".join(str(v) for v in value)
    return value


def suggest(trial, space: Mapping[str, SearchParam]) -> dict[str, Any]:
    """One value per dimension, by name (list choices as their labels)."""
    values = {}
    for name, p in space.items():
        if p.type == "categorical":
            values[name] = trial.suggest_categorical(name, [choice_label(c) for c in p.choices])
        elif p.type == "int":
            values[name] = trial.suggest_int(name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            values[name] = trial.suggest_float(name, float(p.low), float(p.high), step=p.step, log=p.log)
    return values


def format_value(value: Any) -> str:
    """A value as a Hydra override writes it: lists in brackets, booleans lower case."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)) or OmegaConf.is_list(value):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return repr(value) if isinstance(value, float) else str(value)


def to_overrides(space: Mapping[str, SearchParam], values: Mapping[str, Any]) -> list[str]:
    """`key=value` for each dimension; a list choice's label is mapped back to its list."""
    overrides = []
    for name, p in space.items():
        value = values[name]
        if p.type == "categorical":  # (the present setting may lie outside the choices)
            value = next((c for c in p.choices if choice_label(c) == value), value)
        overrides.append(f"{p.key}={format_value(value)}")
    return overrides


def current_values(cfg: HasatConfig, space: Mapping[str, SearchParam]) -> dict[str, Any]:
    """The pipeline's present settings as a trial's parameters (the defaults trial). The `train`
    group's present option is read from train.method (its options are named after the method)."""
    values = {}
    for name, p in space.items():
        value = OmegaConf.select(cfg, "train.method" if p.key == "train" else p.key)
        if OmegaConf.is_list(value):
            value = OmegaConf.to_container(value)
        values[name] = choice_label(value) if p.type == "categorical" else value
    return values


def contains(param: SearchParam, value: Any) -> bool:
    """Whether a value (a choice label for categorical dimensions) lies in the dimension."""
    if param.type == "categorical":
        return value in [choice_label(c) for c in param.choices]
    return isinstance(value, (int, float)) and param.low <= value <= param.high
