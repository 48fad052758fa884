"""Hyperparameter search: Optuna (TPE) over DVC experiments, minimising the validation loss.

    python -m pipeline.search [--n-trials 10] [--timeout 3600] [--study-name NAME] [--storage URL]
                              [search=demo] [search.space.learning_rate.high=1e-2] ['~search.space.lora_r']

Each trial is `dvc exp run --temp -n <study>-t<n> -S <key=value ...> finetune` (visible in
`dvc exp show`), an MLflow run under the study's parent run, and a trial of the Optuna study in
`optuna.db` (or any RDB URL: several machines on one study). The objective is finetune's best
validation loss; a trial whose intermediate validation loss is worse than the median of earlier
trials at the same step is stopped (pruned). Running the same command again resumes the study.
At the end: the best settings as a `dvc exp run -S ...` line, plots in reports/search/<study>/,
and (search.score_best) the pipeline up to evaluate once for the best trial and once for the present
settings: the only time the search touches the test split.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Optional

from pipeline import paths, tracking
from pipeline.config import flatten
from pipeline.config_loader import load_config
from pipeline.search.config import load_search_config
from pipeline.errors import HasatError
from pipeline.io import write_json
from pipeline.search import experiments, study as studies
from pipeline.stages._runner import _quiet_libraries

log = logging.getLogger("hasat")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.search", description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="search=<option>, search.<key>=<value>, ~search.space.<name>")
    parser.add_argument("--n-trials", type=int, help="trials to run now (search.n_trials)")
    parser.add_argument("--timeout", type=float, help="seconds after which no trial starts (search.timeout)")
    parser.add_argument("--study-name", help="search.study_name: the same name (and storage) resumes a study")
    parser.add_argument("--storage", help="search.storage: an SQLAlchemy URL, e.g. postgresql://user@host/optuna")
    parser.add_argument("--no-score", action="store_true", help="skip the test-split runs at the end")
    parser.add_argument("--push", metavar="GIT_REMOTE",
                        help="search.push: `dvc exp push` each finished trial to this remote (several machines)")
    return parser.parse_intermixed_args(argv)  # overrides before or after the flags


def check_repository(root: Path) -> None:
    """Trials are experiments of HEAD: without a committed dvc.lock each would rebuild every stage."""
    if not (root / "dvc.yaml").is_file() or not (root / ".git").exists():
        raise HasatError(f"{root}: run the search at the root of the repository (dvc.yaml, .git)")
    if shutil.which("dvc") is None:
        raise HasatError("dvc is not on PATH: run the search with the project's environment (make install; "
                         "source .venv/bin/activate)")
    if subprocess.run(["git", "cat-file", "-e", "HEAD:dvc.lock"], cwd=root).returncode:
        raise HasatError("dvc.lock is not committed: run `dvc repro` and commit (trials are experiments of HEAD)")


def best_line(overrides: list[str]) -> str:
    return "dvc exp run " + " ".join(f"-S {shlex.quote(o)}" for o in overrides)


def score(name: str, overrides: list[str], root: Path, out_dir: Path, trial_exp: Optional[str] = None,
          remote: Optional[str] = None) -> dict:
    """The pipeline up to evaluate for one setting (the test split), its eval.json and predictions kept.
    With a remote, a trial that ran on another machine is pulled first: its run cache lets DVC restore
    the model that trial trained instead of training again; the scoring run is pushed afterwards."""
    if remote and trial_exp and trial_exp not in experiments.experiment_revs(root):
        error = experiments.share("pull", remote, [trial_exp], root)
        if error:
            log.warning("search: could not pull %s from %s, so its finetune runs again (%s)", trial_exp, remote,
                        error)
        else:
            experiments.cache_git_tracked_outputs(experiments.experiment_revs(root)[trial_exp], root)
    name = experiments.unique_name(name, root)
    log.info("search: scoring %s on the test split: %s", name, best_line(overrides))
    log_file = out_dir / f"{name}.log"
    # up to evaluate: the test split; export (and its model upload to MLflow) is the user's choice
    code = experiments.run_experiment(experiments.dvc_exp_command(name, overrides, ["evaluate"]), root,
                                      dict(os.environ), log_file)
    if code:
        raise HasatError(f"{name}: dvc exp run exited with {code}; see {log_file}")
    rev = experiments.experiment_revs(root)[name]
    predictions = experiments.copy_output_at(rev, paths.PREDICTIONS.as_posix(), root,
                                             out_dir / f"{name}.predictions.jsonl")
    result = {"exp": name, "rev": rev, "eval": experiments.read_json_at(rev, paths.stats("eval").as_posix(), root),
              "predictions": str(predictions)}
    if remote:
        result["pushed"] = studies.push(name, remote, root)
    return result


def versus(defaults: dict, best: dict, out_dir: Path) -> str:
    from pipeline.eval.versus import compare, load_items, table

    try:
        result = compare(load_items(Path(defaults["predictions"]), "finetuned"),
                         load_items(Path(best["predictions"]), "finetuned"), ("defaults", "best"), 1000, 42)
    except HasatError as err:  # e.g. a classifier's predictions: its eval.json has the comparison numbers
        return f"(no paired comparison: {err})"
    text = table(result)
    (out_dir / "versus.txt").write_text(text + "\n", encoding="utf-8")
    write_json(out_dir / "versus.json", result)
    return text


def summarise(study, out_dir: Path) -> dict:
    import optuna

    states = [t.state for t in study.trials]
    counts = {s.name.lower(): states.count(s) for s in optuna.trial.TrialState if states.count(s)}
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise HasatError(f"study '{study.study_name}': no trial completed (see the trial logs in {out_dir})")
    best = study.best_trial
    with (out_dir / "trials.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["number", "state", "val_loss", "dvc_exp", "overrides"])
        for t in study.trials:
            writer.writerow([t.number, t.state.name, t.value, t.user_attrs.get("dvc_exp"),
                             " ".join(t.user_attrs.get("overrides", []))])
    defaults = studies.default_trial(study)
    pushed = sum(bool(t.user_attrs.get("pushed")) for t in complete)
    return {"study": study.study_name, "trials": len(study.trials), **counts, "pushed": pushed,
            "best": {"number": best.number, "val_loss": best.value, "params": best.params,
                     "dvc_exp": best.user_attrs.get("dvc_exp"), "overrides": best.user_attrs.get("overrides")},
            "defaults": None if defaults is None else {
                "number": defaults.number, "val_loss": defaults.value, "dvc_exp": defaults.user_attrs.get("dvc_exp"),
                "overrides": defaults.user_attrs.get("overrides")}}


def main(argv: list[str]) -> int:
    import optuna

    args = parse_args(argv)
    search = load_search_config(args.overrides)
    for key, value in (("n_trials", args.n_trials), ("timeout", args.timeout), ("study_name", args.study_name),
                       ("storage", args.storage), ("push", args.push)):
        if value is not None:
            setattr(search, key, value)
    root = Path.cwd()
    check_repository(root)
    cfg = load_config(list(search.overrides))
    out_dir = root / paths.SEARCH_DIR / search.study_name
    out_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    study, created = studies.open_study(search, root)
    earlier = len(study.trials)
    parent = studies.join(study, created, search, cfg, lambda run_id: tracking.open_search_run(
        cfg, search.study_name, run_id, {f"search.{k}": v for k, v in flatten(search).items()}))
    log.info("search: study '%s' in %s (%d earlier trials), MLflow parent run %s", search.study_name,
             studies.storage_url(search.storage, root), earlier, parent)
    objective = studies.Objective(search, cfg, root, parent, out_dir)
    try:
        study.optimize(objective, n_trials=search.n_trials, timeout=search.timeout, catch=(studies.TrialFailed,))
    except KeyboardInterrupt:
        print(f"hasat search: interrupted; run the same command again to resume study '{search.study_name}'",
              file=sys.stderr)
        return 130
    summary = summarise(study, out_dir)
    best = summary["best"]
    plots = studies.write_plots(study, out_dir)
    print(f"\nstudy '{search.study_name}': {summary['trials']} trials, {summary.get('complete', 0)} complete, "
          f"{summary.get('pruned', 0)} pruned, {summary.get('fail', 0)} failed")
    if summary["defaults"]:
        print(f"present settings (trial {summary['defaults']['number']}): validation loss "
              f"{summary['defaults']['val_loss']:.4f}")
    print(f"best: trial {best['number']} ({best['dvc_exp']}), validation loss {best['val_loss']:.4f}")
    print(f"  reproduce: {best_line(best['overrides'])}")
    print(f"  or take its finetune outputs: dvc exp apply {best['dvc_exp']}")
    print(f"  plots: {', '.join(str(p.relative_to(root)) for p in plots)}")
    if search.push:
        print(f"  shared: {summary['pushed']} of {summary.get('complete', 0)} complete trials pushed to "
              f"'{search.push}' (this and other workers); dvc exp pull {search.push} <name> fetches one")
    metrics = {"best_val_loss": best["val_loss"], "trials_complete": summary.get("complete", 0),
               "trials_pruned": summary.get("pruned", 0)}
    if search.score_best and not args.no_score:
        summary["test"] = score_runs(summary, search, root, out_dir, metrics)
    write_json(out_dir / "summary.json", summary)
    others = sum(t.state == optuna.trial.TrialState.RUNNING for t in study.get_trials(deepcopy=False))
    if others:
        print(f"  {others} trial(s) of other workers still running: the study's MLflow run stays RUNNING")
    tracking.finish_search_run(cfg, parent, metrics, {"hasat.search.best": best_line(best["overrides"])}, out_dir,
                               finished=not others)
    return 0


def score_runs(summary: dict, search, root: Path, out_dir: Path, metrics: dict) -> dict:
    """The test split, once for the best settings and once for the present ones (unless the same)."""
    best = score(f"{search.study_name}-best", summary["best"]["overrides"], root, out_dir,
                 summary["best"]["dvc_exp"], search.push)
    test = {"best": best}
    metrics.update({f"test.best.{k}": v for k, v in flatten(best["eval"]).items()
                    if k.startswith(("finetuned.", "systems.finetuned.")) and isinstance(v, (int, float))})
    defaults = summary["defaults"]
    if defaults and defaults["number"] != summary["best"]["number"]:
        test["defaults"] = score(f"{search.study_name}-defaults", list(search.overrides), root, out_dir,
                                 defaults["dvc_exp"], search.push)
        text = versus(test["defaults"], best, out_dir)
        print(f"\nTest split, present settings vs best trial's (fine-tuned answers):\n{text}")
    elif defaults:
        print("\nThe present settings were the best trial: nothing to compare on the test split.")
    return {k: {"exp": v["exp"], "rev": v["rev"], "pushed": v.get("pushed")} for k, v in test.items()}


if __name__ == "__main__":
    _quiet_libraries()
    # started in the background (nohup, `cmd &`), a process inherits an ignored Ctrl-C, and so would
    # the trials: restore it, so that an interrupt stops the trial and leaves a resumable study
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sys.exit(main(sys.argv[1:]))
    except HasatError as err:
        print(f"hasat search: error: {err}", file=sys.stderr)
        sys.exit(2)
