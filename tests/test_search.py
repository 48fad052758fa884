"""pipeline.search: the search config group, the space, the trial runner, and (e2e) a real
study: Optuna + DVC experiments + MLflow on the tiny model, pruned, resumed and scored."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pipeline.config import flatten
from pipeline.config_loader import load_config
from pipeline.search.config import SearchConfig, load_search_config
from pipeline.errors import HasatError
from pipeline.search import experiments, space
from tests.conftest import REPO, copy_repo, edit_conf

CONF = REPO / "conf"


def test_search_dataclass_defaults_are_conf_search_default():
    assert flatten(load_search_config([], conf_dir=CONF)) == flatten(OmegaConf.structured(SearchConfig))


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF / "search").glob("*.yaml")))
def test_every_search_option_validates_and_its_overrides_are_pipeline_keys(option):
    search = load_search_config([f"search={option}"], conf_dir=CONF)
    load_config(list(search.overrides), params_file=REPO / "params.yaml", conf_dir=CONF)


def test_an_option_replaces_the_space_and_overrides_edit_it():
    search = load_search_config(["search=demo", "search.space.learning_rate.high=1e-2", "~search.space.lora_r",
                                 "search.n_trials=3"], conf_dir=CONF)
    assert set(search.space) == {"learning_rate", "warmup_ratio"} and search.n_trials == 3
    assert search.space.learning_rate.high == pytest.approx(1e-2) and search.study_name == "demo"


@pytest.mark.parametrize("override, named", [
    ("search.sampler=grid", "search.sampler"),
    ("search.space.learning_rate.low=0", "search.space.learning_rate"),
    ("search.space.learning_rate.type=log", "search.space.learning_rate.type"),
    ("search.space.x={key: train.bogus, type: float, low: 1, high: 2}", "train.bogus"),
    ("search.space.x={key: split.seed, type: int, low: 1, high: 3}", "split.seed"),
    ("search.space.x={key: train.lora.r, type: categorical}", "search.space.x"),
    ("search.space.x={key: train.num_epochs, type: int, low: 3, high: 1}", "search.space.x"),
    ("search.n_trials=-1", "search.n_trials"),
    ("search=nope", "search=nope"),
    ("train.learning_rate=1", "train.learning_rate=1"),
    ("~search.space.nope", "search.space.nope"),
])
def test_a_bad_search_override_is_one_line_naming_the_key(override, named):
    with pytest.raises(HasatError, match=re.escape(named)) as err:
        load_search_config([override], conf_dir=CONF)
    assert "\n" not in str(err.value)


def test_suggestions_become_valid_overrides_and_the_present_settings_a_trial():
    import optuna

    search = load_search_config(["search=classification"], conf_dir=CONF)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_modules = set()
    for _ in range(12):
        values = space.suggest(study.ask(), search.space)
        overrides = space.to_overrides(search.space, values)
        cfg = load_config(overrides, params_file=REPO / "params.yaml", conf_dir=CONF)  # they validate
        assert 5e-5 <= cfg.train.learning_rate <= 2e-3 and 1 <= cfg.train.num_epochs <= 4
        seen_modules.add(tuple(cfg.train.lora.target_modules))
    assert seen_modules == {("all-linear",), ("q_proj", "v_proj")}  # list choices travel as lists
    present = space.current_values(load_config([], params_file=REPO / "params.yaml"), search.space)
    assert present == {"learning_rate": 1e-3, "num_epochs": 1, "lora_r": 16, "target_modules": "all-linear"}
    assert all(space.contains(search.space[n], v) for n, v in present.items())
    assert not space.contains(search.space["learning_rate"], 1e-2) and not space.contains(search.space["lora_r"], 4)
    assert space.to_overrides(search.space, present) == ["train.learning_rate=0.001", "train.num_epochs=1",
                                                         "train.lora.r=16", "train.lora.target_modules=[all-linear]"]


def test_the_present_settings_are_queued_again_while_their_trial_has_only_failed():
    import optuna

    from pipeline.search import study as studies

    search = load_search_config(["search=demo"], conf_dir=CONF)
    cfg = load_config([], params_file=REPO / "params.yaml", conf_dir=CONF)
    study = optuna.create_study()
    studies.enqueue_first(study, search, cfg)
    first = study.ask()
    values = space.suggest(first, search.space)
    assert first.user_attrs["defaults"] and values["learning_rate"] == 1e-3
    study.tell(first, state=optuna.trial.TrialState.FAIL)  # say `dvc` was not found
    studies.enqueue_first(study, search, cfg)  # the resume
    again = study.ask()
    assert again.user_attrs["defaults"] and space.suggest(again, search.space) == values
    study.tell(again, 3.5)
    studies.enqueue_first(study, search, cfg)  # it ran: no third baseline
    assert not any(t.state == optuna.trial.TrialState.WAITING for t in study.trials)


def test_plots_of_a_real_study(tmp_path):
    import optuna

    from pipeline.search.study import write_plots

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))

    def objective(trial):
        x, r = trial.suggest_float("lr", 1e-4, 1e-2, log=True), trial.suggest_categorical("r", [8, 16])
        for step in (1, 2):
            trial.report((x - 3e-3) ** 2 * step + r / 1e3, step)
        return (x - 3e-3) ** 2 + r / 1e3

    study.optimize(objective, n_trials=8)
    written = {p.name for p in write_plots(study, tmp_path)}
    assert written == {"history.png", "importance.png", "intermediate.png"}
    assert all((tmp_path / name).stat().st_size > 5_000 for name in written)
    assert write_plots(optuna.create_study(), tmp_path / "none") == []  # no trials: no plots, no error


def test_a_half_written_eval_line_waits(tmp_path):
    log = tmp_path / "evals.jsonl"
    log.write_text('{"step": 2, "val_loss": 3.5}\n{"step": 4, "val_lo')
    assert experiments.new_eval_lines(log, 0) == [{"step": 2, "val_loss": 3.5}]
    assert experiments.new_eval_lines(log, 1) == [] and experiments.new_eval_lines(tmp_path / "none", 0) == []


WRITER = textwrap.dedent("""
    import json, sys, time
    for step in range(1, 41):
        with open(sys.argv[1], "a") as h:
            h.write(json.dumps({"step": step, "val_loss": 5.0 - step / 100}) + "\\n")
        time.sleep(0.1)
""")


def test_the_runner_stops_a_run_when_told_and_reports_every_loss(tmp_path):
    script, evals, log = tmp_path / "writer.py", tmp_path / "evals.jsonl", tmp_path / "run.log"
    script.write_text(WRITER)
    asked = []

    def should_stop(step, loss):
        asked.append((step, loss))
        return step >= 3

    code = experiments.run_experiment([sys.executable, str(script), str(evals)], tmp_path, dict(os.environ), log,
                                      evals, should_stop, poll_s=0.2)
    assert code is None and asked[:3] == [(1, 4.99), (2, 4.98), (3, 4.97)]
    written = len(evals.read_text().splitlines())
    assert written < 40  # stopped early: the writer never finished
    import time

    time.sleep(0.5)
    assert len(evals.read_text().splitlines()) == written  # and it is really gone
    done = experiments.run_experiment([sys.executable, "-c", "raise SystemExit(3)"], tmp_path, dict(os.environ), log)
    assert done == 3 and log.read_text().startswith("$ ")


# --- end to end: a real study on the tiny model --------------------------------------------------

TINY_SEARCH = """\
study_name: tiny
prune_after_trials: 2
sampler_startup_trials: 1
space:
  learning_rate: {key: train.learning_rate, type: categorical, choices: [0.01]}
"""


@pytest.fixture(scope="module")
def search_repo(tmp_path_factory):
    """A copy whose present settings are poor (learning rate 1e-6), with its data stages built and
    committed: trials are experiments of HEAD."""
    from tests.test_e2e import configure, run

    root = copy_repo(tmp_path_factory.mktemp("search") / "repo")
    configure(root)
    edit_conf(root, "train/lora.yaml", {"learning_rate": 1e-6, "max_steps": 6, "evals_per_epoch": 13})
    edit_conf(root, "eval/default.yaml", {"max_examples": 6, "max_new_tokens": 6, "mc.enabled": False})
    (root / "conf/search/tiny.yaml").write_text(TINY_SEARCH)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "hasat-test", "GIT_AUTHOR_EMAIL": "test@hasat.local",
           "GIT_COMMITTER_NAME": "hasat-test", "GIT_COMMITTER_EMAIL": "test@hasat.local"}
    env.pop("MLFLOW_TRACKING_URI", None)
    run([sys.executable, "-m", "pipeline.compose"], root, env)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"],
                ["dvc", "repro", "split", "base_model"], ["git", "add", "-A"], ["git", "commit", "-qm", "data"]):
        run(cmd, root, env)
    return root, env


@pytest.fixture(scope="module")
def studied(search_repo):
    """Run 1: the present settings and lr 1e-2, not scored. Run 2 resumes the study with lr 1e-7,
    which the median pruner stops at its first validation; then the test split for best and present."""
    from tests.test_e2e import run

    root, env = search_repo
    search = [sys.executable, "-m", "pipeline.search", "search=tiny"]
    first = run(search + ["--n-trials", "2", "--no-score"], root, env)
    # (a categorical dimension keeps its choices for the life of a study: a new one replaces it)
    second = run(search + ["--n-trials", "1", "~search.space.learning_rate",
                           "search.space.lr_tiny={key: train.learning_rate, type: categorical, choices: [1e-7]}"],
                 root, env)
    return root, env, first, second


@pytest.mark.e2e
def test_search_prunes_resumes_and_scores_the_best_once(studied):
    root, env, first, second = studied
    assert "study 'tiny': 2 trials, 2 complete, 0 pruned" in first and "scoring" not in first
    assert "(2 earlier trials)" in second and "study 'tiny': 3 trials, 2 complete, 1 pruned" in second
    out = root / "reports/search/tiny"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"]["number"] == 1 and "train.learning_rate=0.01" in summary["best"]["overrides"]
    assert summary["defaults"]["number"] == 0 and summary["defaults"]["val_loss"] > summary["best"]["val_loss"]
    assert "dvc exp run -S train.learning_rate=0.01" in second
    full = [json.loads(line)["step"] for line in (out / "trial-1.evals.jsonl").read_text().splitlines()]
    pruned = [json.loads(line)["step"] for line in (out / "trial-2.evals.jsonl").read_text().splitlines()]
    assert full == [2, 4, 6] and pruned == [2]  # the pruned trial stopped after its first validation
    shown = subprocess.run(["dvc", "exp", "show", "--json"], cwd=root, env=env, capture_output=True, text=True).stdout
    assert all(f'"{name}"' in shown for name in ("tiny-t0", "tiny-t1", "tiny-best", "tiny-defaults"))
    assert '"tiny-t2"' not in shown  # a pruned trial leaves no experiment
    best_eval = summary["test"]["best"]["rev"]
    assert best_eval and (out / "tiny-best.predictions.jsonl").is_file()
    versus = (out / "versus.txt").read_text()
    assert "6 test items" in versus and "defaults" in versus and "chrF" in versus
    for plot in ("history.png", "intermediate.png"):  # (importances need 2+ trials sharing a parameter)
        assert (out / plot).stat().st_size > 5_000, plot


@pytest.mark.e2e
def test_search_trials_are_child_runs_of_one_study_run(studied):
    from mlflow.tracking import MlflowClient

    root = studied[0]
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("hasat").experiment_id])
    [parent] = [r for r in runs if r.info.run_name == "search-tiny"]
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials_pruned"] == 1
    assert "test.best.finetuned.chrf" in parent.data.metrics and "best_val_loss" in parent.data.metrics
    children = {r.data.tags["dvc.exp_name"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert set(children) == {"tiny-t0", "tiny-t1", "tiny-t2"}
    assert children["tiny-t2"].info.status == "KILLED" and children["tiny-t2"].data.tags["hasat.search.state"] == "PRUNED"
    # scoring re-used the trial's model (DVC run cache): the test numbers join the trial's own run
    assert "test.finetuned.chrf" in children["tiny-t1"].data.metrics
    assert "test.finetuned.chrf" not in children["tiny-t2"].data.metrics
    artifacts = {Path(a.path).name for a in client.list_artifacts(parent.info.run_id, "search")}
    assert {"history.png", "summary.json", "trials.csv", "versus.txt"} <= artifacts
