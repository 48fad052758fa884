"""MLflow: one run per trained model. `finetune` opens it and writes its id into a small file
among its DVC outputs; `evaluate` and `export` attach to the same run through that file.

The default store is sqlite `mlflow.db` at the repository root, also when DVC runs an
experiment in its temporary copy under .dvc/tmp/exps/ (a relative path would land in the copy).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
from pathlib import Path
from typing import Iterator, Optional

from pipeline.config import HasatConfig, flatten
from pipeline.errors import HasatError

log = logging.getLogger("hasat")
# set by pipeline.search for a trial's `dvc exp run`: the model's run becomes a child of the study's run
PARENT_RUN_ENV = "HASAT_PARENT_RUN_ID"
SEARCH_TRIAL_ENV = "HASAT_SEARCH_TRIAL"
_METRIC_UNSAFE = re.compile(r"[^\w.\- :]")


def repository_root(start: Optional[Path] = None) -> Path:
    """The user's repository: the cwd, or the folder above .dvc/tmp/exps/ when DVC runs a copy."""
    here = (start or Path.cwd()).resolve()
    parts = here.parts
    for i in range(len(parts) - 2):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return here


def tracking_uri(configured: Optional[str] = None) -> str:
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if configured:
        return configured
    return f"sqlite:///{repository_root() / 'mlflow.db'}"


def _setup(configured_uri: Optional[str]):
    import mlflow

    uri = tracking_uri(configured_uri)
    mlflow.set_tracking_uri(uri)
    return mlflow, uri


def _experiment_id(mlflow, name: str, uri: str) -> str:
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    artifacts = None
    if uri.startswith("sqlite:///") or "://" not in uri:  # keep artifacts beside a local store
        artifacts = (repository_root() / "mlartifacts").as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=artifacts)
    except mlflow.exceptions.MlflowException:  # another process (a search worker) created it meanwhile
        existing = mlflow.get_experiment_by_name(name)
        if existing is None:
            raise
        return existing.experiment_id


def git_commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def open_run(cfg: HasatConfig, resume_run_id: Optional[str] = None, run_name: Optional[str] = None) -> dict:
    """Start the model's run (config as params, tags), or re-open `resume_run_id` after an
    interrupted training. Returns {run_id, experiment_id, tracking_uri} for the run file."""
    mlflow, uri = _setup(cfg.mlflow.tracking_uri)
    experiment_id = _experiment_id(mlflow, cfg.mlflow.experiment_name, uri)
    if resume_run_id and _run_exists(mlflow, resume_run_id):
        run = mlflow.start_run(run_id=resume_run_id)
        mlflow.set_tag("hasat.resumed", "true")
        return {"run_id": run.info.run_id, "experiment_id": experiment_id, "tracking_uri": uri}
    tags = {"hasat.model": cfg.model.name, "hasat.data": cfg.data.name, "hasat.task": cfg.task.kind,
            "hasat.train_method": cfg.train.method, "hasat.model_license": cfg.model.license or "unknown"}
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc.baseline_rev"] = os.environ["DVC_EXP_BASELINE_REV"]
    if os.environ.get(PARENT_RUN_ENV):
        tags["mlflow.parentRunId"] = os.environ[PARENT_RUN_ENV]
        tags["hasat.search.trial"] = os.environ.get(SEARCH_TRIAL_ENV, "")
    name = run_name or os.environ.get("DVC_EXP_NAME") or f"{cfg.model.name}-{cfg.data.name}"
    run = mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags)
    params = {k: ("null" if v is None else str(v))[:6000] for k, v in flatten(cfg).items()}
    items = list(params.items())
    for start in range(0, len(items), 100):
        mlflow.log_params(dict(items[start:start + 100]))
    return {"run_id": run.info.run_id, "experiment_id": experiment_id, "tracking_uri": uri}


def _run_exists(mlflow, run_id: str) -> bool:
    try:
        mlflow.get_run(run_id)
        return True
    except Exception:  # MlflowException for an unknown id; a different store raises others
        return False


@contextlib.contextmanager
def attach_run(cfg: HasatConfig, run_file: Path) -> Iterator[object]:
    """Re-open the model's run (evaluate/export). Yields the mlflow module."""
    if not Path(run_file).is_file():
        raise HasatError(f"{run_file}: MLflow run file missing (run the finetune stage)")
    run_id = json.loads(Path(run_file).read_text(encoding="utf-8"))["run_id"]
    mlflow, uri = _setup(cfg.mlflow.tracking_uri)
    if not _run_exists(mlflow, run_id):
        raise HasatError(f"MLflow run {run_id} (from {run_file}) is not in the store {uri}; "
                         "re-run finetune or point MLFLOW_TRACKING_URI at the store that has it")
    with mlflow.start_run(run_id=run_id):
        yield mlflow


def log_metrics(metrics: dict[str, float], step: Optional[int] = None) -> None:
    """Into the active run (finetune's, during training)."""
    import mlflow

    mlflow.log_metrics(metrics, step=step)


def end_run(failed: bool = False) -> None:
    import mlflow

    mlflow.end_run(status="FAILED" if failed else "FINISHED")


def log_eval(cfg: HasatConfig, run_file: Path, metrics: dict[str, float], tags: dict[str, str], artifacts: list[Path]) -> None:
    """evaluate's numbers, tags and report files (folders too) into the model's run, under eval/."""
    with attach_run(cfg, run_file) as mlflow:
        mlflow.log_metrics(metrics)
        if tags:
            mlflow.set_tags(tags)
        for path in artifacts:
            if Path(path).is_dir():
                mlflow.log_artifacts(str(path), artifact_path=f"eval/{Path(path).name}")
            else:
                mlflow.log_artifact(str(path), artifact_path="eval")


def log_data_report(cfg: HasatConfig, run_file: Path, report: Path) -> None:
    """The data report (the data_report stage's HTML) into the model's run, under data/. export logs
    it: the run exists only after finetune, and a report change must not re-run the training."""
    if not Path(report).is_file():
        raise HasatError(f"{report}: the data report is missing (run the data_report stage)")
    with attach_run(cfg, run_file) as mlflow:
        mlflow.log_artifact(str(report), artifact_path="data")


def log_export(cfg: HasatConfig, run_file: Path, card: Path, model_dir: Path) -> None:
    """The model card and the notice files that travel with the weights, into the model's run."""
    with attach_run(cfg, run_file) as mlflow:
        mlflow.log_artifact(str(card), artifact_path="model_card")
        for notice in sorted(Path(model_dir).glob("*")):
            if notice.is_file() and notice.name.upper().startswith(("LICEN", "NOTICE", "USE_POLICY")):
                mlflow.log_artifact(str(notice), artifact_path="model_card")


def registry_name(cfg: HasatConfig) -> str:
    return cfg.registry.model_name or f"hasat-{cfg.data.name}"


def pip_requirements() -> list[str]:
    """What the logged model needs, pinned to what wrote it (MLflow's inference adds torchvision)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("torch", "transformers", "tokenizers", "safetensors", "accelerate", "mlflow"):
        try:
            pins.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:
            continue
    return pins


def _signature(task: str):
    """Classifier: text in, label and score out. Chat models (llm/v1/chat) get MLflow's chat schema,
    whose inputs declare the generation settings (max_tokens, temperature, top_p, top_k, stop)."""
    if task != "text-classification":
        return None
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("string")]),
                          outputs=Schema([ColSpec("string", "label"), ColSpec("double", "score")]))


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """mlflow.transformers looks up the model's card and licence on the Hugging Face Hub by its
    name_or_path (here a local folder): without a network that is 2 x 5 retries of 8 s. Offline mode
    makes the lookups fail at once; the exported folder carries the card and the licence notices."""
    from huggingface_hub import constants

    before, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def log_registered_model(cfg: HasatConfig, run_file: Path, model, tokenizer, task: str, metadata: dict,
                         tags: dict[str, str]) -> Optional[str]:
    """The merged model as an MLflow transformers model in the model's run (the loaded model and
    tokenizer: logging a folder path crashes on transformers 5); registered under `registry_name`
    with the alias `challenger` and `tags` when registry.enabled. Returns the version, if registered."""
    with attach_run(cfg, run_file) as mlflow, _hub_offline():
        name = registry_name(cfg) if cfg.registry.enabled else None
        info = mlflow.transformers.log_model({"model": model, "tokenizer": tokenizer}, name="model", task=task,
                                             signature=_signature(task), pip_requirements=pip_requirements(),
                                             metadata={"hasat": metadata}, registered_model_name=name)
        if name is None:
            return None
        version = str(info.registered_model_version)
        client = mlflow.MlflowClient()
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
        client.set_registered_model_alias(name, "challenger", version)
        return version


def _client(cfg: HasatConfig):
    mlflow, _ = _setup(cfg.mlflow.tracking_uri)
    return mlflow.MlflowClient()


def registered_version(cfg: HasatConfig, name: str, alias_or_version: str) -> Optional[dict]:
    """{version, run_id, tags, description} of `name@alias` (or version `name/3`), None when absent."""
    client = _client(cfg)
    try:
        found = (client.get_model_version(name, alias_or_version) if alias_or_version.isdigit()
                 else client.get_model_version_by_alias(name, alias_or_version))
    except Exception as err:  # MlflowException: no such model or alias
        if "RESOURCE_DOES_NOT_EXIST" in str(getattr(err, "error_code", "")) or "not found" in str(err).lower():
            return None
        raise HasatError(f"MLflow registry ({tracking_uri(cfg.mlflow.tracking_uri)}): {str(err).splitlines()[0]}") \
            from None
    return {"version": str(found.version), "run_id": found.run_id, "tags": dict(found.tags),
            "description": found.description or ""}


def download_model(cfg: HasatConfig, uri: str, dest: Path) -> Path:
    """The files of a registered (or logged) model, e.g. `models:/hasat-tarim_sft@champion`, in `dest`."""
    mlflow, store = _setup(cfg.mlflow.tracking_uri)
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest)))
    except Exception as err:  # MlflowException and the stores' own errors: one line for the user
        raise HasatError(f"{uri}: cannot fetch it from the MLflow store {store} ({str(err).splitlines()[0]})") \
            from None


def record_promotion(cfg: HasatConfig, name: str, challenger: str, tags: dict[str, str], description: str,
                     promote: bool, previous: Optional[str] = None) -> None:
    """The decision on the challenger's version (tags, description); on promotion the `champion`
    alias moves and the former champion is tagged with who replaced it, never silently."""
    client = _client(cfg)
    for key, value in tags.items():
        client.set_model_version_tag(name, challenger, key, value)
    client.update_model_version(name, challenger, description=description)
    if not promote:
        return
    if previous is not None:
        client.set_model_version_tag(name, previous, "hasat.replaced_by", challenger)
        client.set_registered_model_alias(name, "previous_champion", previous)
    client.set_registered_model_alias(name, "champion", challenger)


def log_stats_files(files: list[Path]) -> None:
    """Numeric entries of data-stage stats JSONs as metrics `<stage>.<key>`, the files as artifacts."""
    import mlflow

    for path in files:
        if not path.is_file():
            continue
        stats = json.loads(path.read_text(encoding="utf-8"))
        numeric = {f"{path.stem}.{k}": float(v) for k, v in flatten(stats).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if numeric:  # keys can hold file names (per-source counts): keep what MLflow accepts in a name
            mlflow.log_metrics({_METRIC_UNSAFE.sub("_", k.replace("/", "_"))[:250]: v for k, v in numeric.items()})
        mlflow.log_artifact(str(path), artifact_path="stats")


def _client_and_store(cfg: HasatConfig):
    mlflow, uri = _setup(cfg.mlflow.tracking_uri)
    return mlflow.MlflowClient(uri), mlflow, uri


def open_search_run(cfg: HasatConfig, study_name: str, run_id: Optional[str], params: dict[str, str]) -> str:
    """The study's parent run (re-used when `run_id` is still in the store: a resumed study).
    It is never the active run: the trials open their own runs in their own processes."""
    client, mlflow, uri = _client_and_store(cfg)
    if run_id and _run_exists(mlflow, run_id):
        client.update_run(run_id, status="RUNNING")
        return run_id
    tags = {"hasat.search.study": study_name, "hasat.model": cfg.model.name, "hasat.data": cfg.data.name}
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    run = client.create_run(_experiment_id(mlflow, cfg.mlflow.experiment_name, uri), run_name=f"search-{study_name}",
                            tags=tags)
    for key, value in params.items():
        client.log_param(run.info.run_id, key, str(value)[:6000])
    return run.info.run_id


def log_search_trial(cfg: HasatConfig, parent_id: str, number: int, metrics: dict[str, float], exp_name: str,
                     state: str) -> None:
    """A trial's outcome into the study's run (step = trial number), its state onto the trial's own run."""
    client, _, _ = _client_and_store(cfg)
    for key, value in metrics.items():
        client.log_metric(parent_id, key, value, step=number)
    children = client.search_runs(
        [client.get_run(parent_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}' and tags.`dvc.exp_name` = '{exp_name}'")
    for child in children:
        client.set_tag(child.info.run_id, "hasat.search.state", state)
        if state == "PRUNED":  # stopped on purpose, not a failure
            client.set_terminated(child.info.run_id, status="KILLED")


def finish_search_run(cfg: HasatConfig, parent_id: str, metrics: dict[str, float], tags: dict[str, str],
                      artifacts: Path, finished: bool = True) -> None:
    client, _, _ = _client_and_store(cfg)
    for key, value in metrics.items():
        client.log_metric(parent_id, key, value)
    for key, value in tags.items():
        client.set_tag(parent_id, key, value[:5000])
    if Path(artifacts).is_dir():
        client.log_artifacts(parent_id, str(artifacts), artifact_path="search")
    if finished:  # (not while other workers still run trials under it)
        client.set_terminated(parent_id, status="FINISHED")
