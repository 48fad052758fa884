"""`python -m pipeline.stages.<name> --help` on every stage: exit 0, what the stage reads and
writes (every data dep and out dvc.yaml lists for it) and its main config keys with their values."""

import runpy
import sys

import pytest
import yaml

from pipeline.config_loader import load_config
from tests.conftest import REPO, run_stage_cli

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def declared_paths(spec: dict) -> list[str]:
    """A stage's data deps and outputs as dvc.yaml names them (`${data.path}` -> data.path)."""
    items = [d for d in spec.get("deps", []) if not str(d).startswith("pipeline")]
    for key in ("outs", "metrics", "plots"):
        items += [next(iter(o)) if isinstance(o, dict) else o for o in spec.get(key, [])]
    return [str(item).removeprefix("${").removesuffix("}") for item in items]


def help_of(name: str, monkeypatch, capsys, *overrides: str) -> str:
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", [f"pipeline.stages.{name}", *overrides, "--help"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_module(f"pipeline.stages.{name}", run_name="__main__")
    assert stop.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(STAGES))
def test_help_names_what_the_stage_reads_writes_and_its_keys(name, monkeypatch, capsys):
    text = help_of(name, monkeypatch, capsys)
    spec = STAGES[name]
    assert text.startswith(f"Stage {name}") and f"usage: python -m pipeline.stages.{name}" in text
    reads, rest = text.split("\nreads:\n", 1)[1].split("\nwrites:\n", 1)
    writes, keys = rest.split("\nmain config keys", 1)
    for item in (d for d in spec.get("deps", []) if not str(d).startswith("pipeline")):
        assert str(item).removeprefix("${").removesuffix("}") in reads, (name, item)
    missing = [p for p in declared_paths(spec) if p not in reads + writes]
    assert not missing, f"{name} --help does not name {missing}"
    listed = {line.split()[0]: line.split(None, 1)[1] if len(line.split()) > 1 else ""
              for line in keys.splitlines()[1:] if line.startswith("  ")}
    cfg = load_config([])
    assert "(unknown key)" not in listed.values(), f"{name} --help lists keys the config does not have"
    for param in spec.get("params", []):
        param = next(iter(param)) if isinstance(param, dict) else param
        assert any(key == param or key.startswith(param + ".") for key in listed), (name, param)
    assert listed and all(key.split(".")[0] in cfg for key in listed)


def test_help_shows_overridden_values(monkeypatch, capsys):
    text = help_of("split", monkeypatch, capsys, "split.seed=7", "split.test_size=0.25")
    assert "params.yaml + overrides" in text
    assert any(line.split() == ["split.seed", "7"] for line in text.splitlines())
    assert any(line.split() == ["split.test_size", "0.25"] for line in text.splitlines())


def test_help_from_the_command_line_without_params_yaml(tmp_path):
    result = run_stage_cli("pipeline.stages.tokenize", "--help", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "data/interim/clean.jsonl" in result.stdout and "tokenize.max_seq_len" in result.stdout
    assert "values unavailable: params.yaml: config file not found" in result.stdout
    bad = run_stage_cli("pipeline.stages.tokenize", "--hlep")  # a typo is still an error, before any work
    assert bad.returncode == 2 and bad.stderr.startswith("hasat tokenize: error: unknown option '--hlep'")
