"""The Optuna side: the study in its storage, the objective (one DVC experiment per trial, its
validation loss, pruning from the intermediate ones), the summary and the plots."""

from __future__ import annotations

import logging
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from pipeline import paths, tracking
from pipeline.config import HasatConfig
from pipeline.search.config import SearchConfig
from pipeline.config_loader import load_config
from pipeline.errors import HasatError
from pipeline.search import experiments, space

log = logging.getLogger("hasat")
OBJECTIVE = "best_val_loss"  # metrics/finetune.json: the lowest validation loss of the run
PARENT_ATTR = "mlflow_parent_run_id"
SQLITE_BUSY_S = 120  # how long a worker waits for another's write to an SQLite study
PARENT_WAIT_S = 120  # how long a worker that joined a new study waits for its creator's MLflow parent run


def storage_url(configured: Optional[str], root: Path) -> str:
    return configured or f"sqlite:///{(root / paths.OPTUNA_DB).resolve()}"


def rdb_storage(url: str, attempts: int = 5):
    """The RDB storage. SQLite waits up to SQLITE_BUSY_S for another worker's write instead of the
    driver's 5 s, and two workers that create a new file's tables at once (one of them finds a
    table the other just made) retry."""
    import optuna
    import sqlalchemy.exc

    kwargs = {"connect_args": {"timeout": SQLITE_BUSY_S}} if url.startswith("sqlite") else {}
    for attempt in range(1, attempts + 1):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except ImportError as err:  # e.g. postgresql:// without a driver
            raise HasatError(f"search.storage: {err} (install the database driver, e.g. psycopg2-binary)") from None
        except sqlalchemy.exc.SQLAlchemyError as err:
            if attempt == attempts:
                raise HasatError(f"search.storage {url}: {str(err).splitlines()[0]}") from None
            time.sleep(0.5 + random.random())


def open_study(search: SearchConfig, root: Path):
    """(study, created): create the study, or load it when one of that name is in the storage (a
    resumed study, or another worker's). Creating is atomic in the database (unique study names), so
    of several workers started at once exactly one is its creator. A worker that joins an existing
    study re-seeds its sampler: with the same seed as the others it would draw the same values."""
    import optuna

    sampler = (optuna.samplers.TPESampler(seed=search.seed, n_startup_trials=search.sampler_startup_trials)
               if search.sampler == "tpe" else optuna.samplers.RandomSampler(seed=search.seed))
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=search.prune_after_trials,
                                          n_warmup_steps=search.prune_warmup_steps)
              if search.pruner == "median" else optuna.pruners.NopPruner())
    storage = rdb_storage(storage_url(search.storage, root))
    try:
        return optuna.create_study(storage=storage, study_name=search.study_name, sampler=sampler, pruner=pruner,
                                   direction="minimize"), True
    except optuna.exceptions.DuplicatedStudyError:
        sampler.reseed_rng()
        return optuna.load_study(storage=storage, study_name=search.study_name, sampler=sampler, pruner=pruner), False


def join(study, created: bool, search: SearchConfig, cfg: HasatConfig, open_parent: Callable[[Optional[str]], str],
         wait_s: float = PARENT_WAIT_S, poll_s: float = 1.0) -> str:
    """Queue the first trials and return the study's one MLflow parent run. The creator queues and
    then opens the parent and records it in the study; a worker that joined waits until it is
    recorded, instead of opening a second parent at the same moment (one record would win, and the
    other worker's trials would hang under a parent the study no longer names). After `wait_s`
    without one (its creator stopped before recording it), the worker opens it itself."""
    if not created:
        deadline = time.monotonic() + wait_s
        while PARENT_ATTR not in study.user_attrs and time.monotonic() < deadline:
            time.sleep(poll_s)
        if PARENT_ATTR not in study.user_attrs:
            log.info("search: study '%s' has no MLflow parent run after %.0f s: opening one", study.study_name, wait_s)
    enqueue_first(study, search, cfg)
    parent = open_parent(study.user_attrs.get(PARENT_ATTR))
    study.set_user_attr(PARENT_ATTR, parent)
    return parent


@dataclass
class Objective:
    """Runs trial after trial as `dvc exp run --temp -n <study>-t<number> -S ... finetune`."""
    search: SearchConfig
    cfg: HasatConfig
    root: Path
    parent_run_id: str
    out_dir: Path
    env: dict = field(default_factory=lambda: dict(os.environ))

    def __call__(self, trial) -> float:
        import optuna

        # the present-settings trial may hold values outside the space: they are set, not suggested
        outside = dict(trial.user_attrs.get("present_outside_space", {}))
        values = {**space.suggest(trial, {n: p for n, p in self.search.space.items() if n not in outside}), **outside}
        overrides = list(self.search.overrides) + space.to_overrides(self.search.space, values)
        load_config(overrides)  # a bad value fails here in one line, not after a DVC start-up
        name = experiments.unique_name(f"{self.search.study_name}-t{trial.number}", self.root)
        trial.set_user_attr("dvc_exp", name)
        trial.set_user_attr("overrides", overrides)
        eval_log = self.out_dir / f"trial-{trial.number}.evals.jsonl"
        eval_log.unlink(missing_ok=True)
        env = {**self.env, paths.EVAL_LOG_ENV: str(eval_log.resolve()),
               tracking.PARENT_RUN_ENV: self.parent_run_id, tracking.SEARCH_TRIAL_ENV: str(trial.number)}
        log.info("search: trial %d (%s): %s", trial.number, name, " ".join(overrides))

        def should_stop(step: int, loss: float) -> bool:
            trial.report(loss, step)
            return trial.should_prune()

        log_file = self.out_dir / f"trial-{trial.number}.log"
        try:
            code = experiments.run_experiment(experiments.dvc_exp_command(name, overrides, ["finetune"]), self.root,
                                              env, log_file, eval_log, should_stop)
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)  # the next run of this study re-runs these settings
            raise
        steps = [line["step"] for line in experiments.new_eval_lines(eval_log, 0)]
        if code is None:
            log.info("search: trial %d pruned at step %d (validation loss worse than the median)", trial.number,
                     steps[-1])
            self._record(trial.number, name, "PRUNED", {"trial_pruned_at_step": float(steps[-1])})
            raise optuna.TrialPruned()
        if code != 0:
            self._record(trial.number, name, "FAILED", {})
            raise TrialFailed(f"trial {trial.number}: dvc exp run exited with {code}; its log ({log_file}) "
                              f"ends:\n{experiments.tail(log_file)}")
        rev = experiments.experiment_revs(self.root)[name]
        stats = experiments.read_json_at(rev, (paths.stats("finetune")).as_posix(), self.root)
        trial.set_user_attr("dvc_rev", rev)
        trial.set_user_attr("steps", stats.get("steps"))
        value = float(stats[OBJECTIVE])
        log.info("search: trial %d: validation loss %.4f (%s steps)", trial.number, value, stats.get("steps"))
        self._record(trial.number, name, "COMPLETE", {"trial_val_loss": value})
        if self.search.push:
            trial.set_user_attr("pushed", push(name, self.search.push, self.root))
        return value

    def _record(self, number: int, name: str, state: str, metrics: dict[str, float]) -> None:
        tracking.log_search_trial(self.cfg, self.parent_run_id, number, metrics, name, state)


def push(name: str, remote: str, root: Path) -> bool:
    """Share an experiment (`dvc exp push`); a failure is one line in the log and loses nothing."""
    error = experiments.share("push", remote, [name], root)
    if error:
        log.warning("search: %s was not pushed to %s (%s)", name, remote, error)
    else:
        log.info("search: pushed %s to %s", name, remote)
    return error is None


class TrialFailed(Exception):
    """A trial's DVC run failed (Optuna records it as FAIL and goes on)."""


def enqueue_first(study, search: SearchConfig, cfg: HasatConfig) -> None:
    """Re-run the settings of trials an interrupt cut short; the present settings first in a new study
    and again while no present-settings trial has run without failing."""
    import optuna

    requeued = {t.user_attrs.get("requeue_of") for t in study.trials}
    for t in study.trials:
        if t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get("interrupted") and t.number not in requeued:
            keep = {k: v for k, v in t.user_attrs.items() if k in ("defaults", "present_outside_space")}
            study.enqueue_trial(t.params, user_attrs={"requeue_of": t.number, **keep})
    # a new study, or one whose present-settings trial failed (a broken tool, say): the baseline first
    if search.enqueue_defaults and not any(t.user_attrs.get("defaults") and t.state != optuna.trial.TrialState.FAIL
                                           for t in study.get_trials(deepcopy=False)):
        present = space.current_values(cfg, search.space)
        inside = {n: v for n, v in present.items() if space.contains(search.space[n], v)}
        study.enqueue_trial(inside, user_attrs={"defaults": True, "present_outside_space": {
            n: v for n, v in present.items() if n not in inside}})


def default_trial(study) -> Optional[Any]:
    return next((t for t in study.trials if t.user_attrs.get("defaults") and t.value is not None), None)


def write_plots(study, out_dir: Path) -> list[Path]:
    """Optimisation history and parameter importances (PNG); the latter needs 2+ finished trials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, plot in (("history", ovm.plot_optimization_history), ("importance", ovm.plot_param_importances),
                       ("intermediate", ovm.plot_intermediate_values)):
        try:
            ax = plot(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as err:
            log.info("search: no %s plot (%s)", name, str(err).splitlines()[0] if str(err) else type(err).__name__)
            continue
        figure = (ax[0] if hasattr(ax, "__len__") else ax).figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        path = out_dir / f"{name}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written
