import re
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from pipeline.config import CONFIG_GROUPS
from pipeline.config_loader import load_config
from pipeline.errors import HasatError
from tests.conftest import REPO, run_stage_cli


def test_params_yaml_is_the_composition_of_conf():
    result = subprocess.run([sys.executable, "-m", "pipeline.compose", "--check"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_stale_params_yaml_is_detected(tmp_path):
    stale = tmp_path / "params.yaml"
    stale.write_text((REPO / "params.yaml").read_text().replace("learning_rate: 0.001", "learning_rate: 0.5"))
    result = subprocess.run([sys.executable, "-m", "pipeline.compose", "--check", "--output", str(stale)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 1 and "stale" in result.stderr


@pytest.mark.parametrize("group", CONFIG_GROUPS)
def test_every_group_option_validates(group, tmp_path):
    for option in sorted((REPO / "conf" / group).glob("*.yaml")):
        cfg = load_config([f"{group}={option.stem}"], params_file=REPO / "params.yaml", conf_dir=REPO / "conf")
        assert OmegaConf.select(cfg, group) is not None


def test_keys_can_be_added_after_a_group_option():
    cfg = load_config(["data=haber_cls", "data.columns={metin: text, kategori: label}", "train=full",
                       "train.learning_rate=1e-5"], params_file=REPO / "params.yaml", conf_dir=REPO / "conf")
    assert dict(cfg.data.columns) == {"metin": "text", "kategori": "label"} and cfg.data.name == "haber_cls"
    assert cfg.train.method == "full" and cfg.train.learning_rate == pytest.approx(1e-5)


def test_dotted_override_is_typed():
    cfg = load_config(["train.learning_rate=2e-4", "eval.max_examples=5"], params_file=REPO / "params.yaml")
    assert cfg.train.learning_rate == pytest.approx(2e-4)
    assert cfg.eval.max_examples == 5


@pytest.mark.parametrize("override, named", [
    ("train.bogus=1", "train.bogus"),
    ("train.learning_rate=fast", "train.learning_rate"),
    ("tokenize.truncation=sometimes", "tokenize.truncation"),
    ("split.test_size=1.5", "split.test_size"),
    ("split.test_size=-1", "split.test_size"),
    ("model=gpt5", "model"),
    ("nonsense", "nonsense"),
    ("data.sources=[{path: a.csv, weight: -1}]", "data.sources[0].weight"),
    ("data.sources=[{pth: a.csv}]", "pth"),
    ("data.sources=[{path: a.csv, format: xlsx}]", "data.sources[0].format"),
    ("data.columns={talimat: soru}", "data.columns.talimat"),
    ("clean.pii.kinds=[passport]", "clean.pii.kinds"),
    ("clean.language.action=drop", "clean.language.action"),
    ("clean.balance.method=smote", "clean.balance.method"),
    ("clean.near_duplicates.threshold=2", "clean.near_duplicates.threshold"),
    ("clean.length.min_chars=-1", "clean.length.min_chars"),
    ("data.columns={soru: instruction, talimat: instruction}", "data.columns"),
])
def test_bad_override_names_the_key(override, named):
    with pytest.raises(HasatError, match=re.escape(named)) as err:
        load_config([override], params_file=REPO / "params.yaml", conf_dir=REPO / "conf")
    assert "\n" not in str(err.value)


def test_unknown_key_in_params_file_fails(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text((REPO / "params.yaml").read_text() + "extra_section:\n  a: 1\n")
    with pytest.raises(HasatError, match="extra_section"):
        load_config([], params_file=bad)


def test_stage_cli_fails_fast_with_one_line():
    result = run_stage_cli("pipeline.stages.finetune", "train.bogus=1")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["hasat finetune: error: config key 'train.bogus': Key 'bogus' not in 'TrainConfig'"]


def test_missing_params_file_is_one_line(tmp_path):
    with pytest.raises(HasatError, match="params.yaml: config file not found"):
        load_config([], params_file=tmp_path / "params.yaml")


def test_sources_override_is_typed():
    cfg = load_config(["data.sources=[{path: a.csv, weight: 0.5, columns: {talimat: instruction}}, {path: b.jsonl}]"],
                      params_file=REPO / "params.yaml")
    assert cfg.data.sources[0].weight == 0.5 and cfg.data.sources[0].columns == {"talimat": "instruction"}
    assert cfg.data.sources[1].format == "auto" and cfg.data.sources[1].weight is None


def test_dataclass_defaults_are_the_default_composition_of_conf():
    """The dataclasses are the schema: their defaults must be what conf/'s defaults compose to. The
    domain keys conf/config.yaml sets for every data config are the exception that proves it: their
    default is that neutral value (what a new data config gets), which the default data option overrides."""
    from pipeline.config import HasatConfig, flatten

    defaults = flatten(OmegaConf.structured(HasatConfig))
    neutral = flatten(OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "config.yaml").data), "data.")
    assert set(neutral) == {"data.domain", "data.description", "data.system_prompt", "data.benchmark"}
    composed = {**flatten(OmegaConf.load(REPO / "params.yaml")), **neutral}
    differ = {k: (defaults.get(k), composed.get(k)) for k in set(defaults) | set(composed)
              if defaults.get(k, "<missing>") != composed.get(k, "<missing>")}
    assert differ == {}


def test_choices_come_from_the_schema():
    from pipeline.config import CHOICES, PromptFormat
    from pipeline.train.prompts import PROMPT_FORMATS
    from typing import get_args

    assert CHOICES["task.prompt_format"] == get_args(PromptFormat) == PROMPT_FORMATS
    assert CHOICES["tokenize.truncation"] == ("drop", "truncate", "error")
    for option in sorted((REPO / "conf").glob("*/*.yaml")):  # every shipped option uses a known value
        group = option.parent.name
        values = flatten_yaml(OmegaConf.load(option), group)
        for key, allowed in CHOICES.items():
            if key in values:
                assert values[key] in allowed, (option, key)


def flatten_yaml(node, prefix: str) -> dict:
    from pipeline.config import flatten

    return flatten(OmegaConf.to_container(node), f"{prefix}.")
