"""The search on several machines: workers on one Optuna study in a shared RDB, their MLflow runs on
one tracking server, their DVC experiments shared through a git remote and a DVC remote.

The unit part checks the two places where workers race (creating the storage and the study, and
opening the study's MLflow parent run). The e2e part does it for real on this machine: a bare git
repository and a local folder as the remotes, an `mlflow server` process, two clones running
`python -m pipeline.search` at the same time against one SQLite study, a third clone that pulls
their experiments and reports and scores the study."""

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.search import experiments, study as studies
from pipeline.search.config import load_search_config
from tests.conftest import REPO, copy_repo, edit_conf, free_port

CREATE = textwrap.dedent("""
    import sys
    from pathlib import Path
    from pipeline.search import study
    from pipeline.search.config import load_search_config
    search = load_search_config(["search.storage=" + sys.argv[1], "search.study_name=shared"], conf_dir=sys.argv[2])
    print(study.open_study(search, Path("."))[1])
""")


def test_workers_started_at_once_share_one_new_sqlite_study_with_one_creator(tmp_path):
    """Four processes create the same study in a fresh SQLite file at the same moment: all get it
    (no 'table already exists', no 'database is locked'), exactly one of them as its creator."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", CREATE, url, str(REPO / "conf")], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in results]
    assert sorted(out.strip() for out, _ in results) == ["False", "False", "False", "True"]


def test_a_joining_worker_waits_for_the_creators_parent_run(tmp_path):
    search = load_search_config([f"search.storage=sqlite:///{tmp_path / 'optuna.db'}", "search=demo"],
                                conf_dir=REPO / "conf")
    search.enqueue_defaults = False
    creator, created = studies.open_study(search, tmp_path)
    joiner, joined_new = studies.open_study(search, tmp_path)
    assert created and not joined_new
    opened = []

    def open_parent(run_id):
        opened.append(run_id)
        return run_id or f"run-{len(opened)}"

    got = {}
    waiting = threading.Thread(target=lambda: got.update(joiner=studies.join(joiner, False, search, None, open_parent,
                                                                                wait_s=60, poll_s=0.05)))
    waiting.start()
    time.sleep(0.5)
    assert "joiner" not in got and opened == []  # it waits: no second parent opened meanwhile
    got["creator"] = studies.join(creator, True, search, None, open_parent)
    waiting.join(timeout=30)
    assert got == {"creator": "run-1", "joiner": "run-1"} and opened == [None, "run-1"]
    # a creator that never recorded one: after the wait, the worker opens the parent itself
    lone, _ = studies.open_study(load_search_config([f"search.storage=sqlite:///{tmp_path / 'optuna.db'}",
                                                     "search=demo", "search.study_name=orphan"],
                                                    conf_dir=REPO / "conf"), tmp_path)
    lone_search = load_search_config(["search=demo", "search.enqueue_defaults=false"], conf_dir=REPO / "conf")
    assert studies.join(lone, False, lone_search, None, open_parent, wait_s=0.2, poll_s=0.05) == "run-3"


def test_a_failing_push_is_one_line_and_loses_nothing(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    error = experiments.share("push", "nowhere", ["nope-t0"], tmp_path)
    assert error and error.startswith("dvc exp push --run-cache nowhere nope-t0: ") and "\n" not in error
    assert studies.push("nope-t0", "nowhere", tmp_path) is False


# --- end to end: two workers, one study, one MLflow server, shared experiments -------------------

DIST_SEARCH = """\
study_name: dist
sampler: random
pruner: none
space:
  learning_rate: {key: train.learning_rate, type: categorical, choices: [1.0e-7]}
"""


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` with an SQLite backend and an artifact folder in tmp, on a free port."""
    where = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    log = (where / "server.log").open("w")
    server = subprocess.Popen([str(mlflow_bin), "server", "--backend-store-uri", f"sqlite:///{where / 'mlflow.db'}",
                               "--artifacts-destination", str(where / "artifacts"), "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"],
                              cwd=where, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        yield server, uri, where
    finally:
        for sig, wait_s in (("SIGTERM", 20), ("SIGKILL", 10)):
            try:
                os.killpg(server.pid, getattr(__import__("signal"), sig))
                server.wait(timeout=wait_s)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        log.close()


def _wait_healthy(server, uri: str, where: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.poll() is None, (where / "server.log").read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"mlflow server not healthy after {timeout_s} s: {(where / 'server.log').read_text()[-3000:]}")


@pytest.fixture(scope="module")
def shared(tmp_path_factory, mlflow_server):
    """A repository with its data stages built and pushed to a local DVC remote, in a bare git
    repository; two clones of it, each with `dvc pull` (two machines)."""
    from tests.test_e2e import configure, run

    server, uri, server_dir = mlflow_server
    tmp = tmp_path_factory.mktemp("dist")
    base = copy_repo(tmp / "base")
    configure(base)
    edit_conf(base, "train/lora.yaml", {"max_steps": 4, "evals_per_epoch": 13})
    edit_conf(base, "eval/default.yaml", {"max_examples": 4, "max_new_tokens": 4, "mc.enabled": False})
    (base / "conf/search/dist.yaml").write_text(DIST_SEARCH)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "hasat-test", "GIT_AUTHOR_EMAIL": "test@hasat.local",
           "GIT_COMMITTER_NAME": "hasat-test", "GIT_COMMITTER_EMAIL": "test@hasat.local", "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    bare = tmp / "shared.git"
    run([sys.executable, "-m", "pipeline.compose"], base, env)
    for cmd in (["git", "init", "-q", "-b", "main"], ["dvc", "remote", "add", "-d", "store", str(tmp / "dvc-store")],
                ["git", "add", "-A"], ["git", "commit", "-qm", "copy"], ["dvc", "repro", "split", "base_model"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "data"], ["dvc", "push", "-q"],
                ["git", "init", "-q", "--bare", "-b", "main", str(bare)], ["git", "push", "-q", str(bare), "main"]):
        run(cmd, base, env)
    clones = [tmp / name for name in ("worker-1", "worker-2", "reporter")]
    for clone in clones:
        run(["git", "clone", "-q", str(bare), str(clone)], tmp, env)
        run(["dvc", "pull", "-q", "--with-deps", "split", "base_model"], clone, env)
    _wait_healthy(server, uri, server_dir)
    return clones, bare, {**env, "MLFLOW_TRACKING_URI": uri}, tmp


@pytest.fixture(scope="module")
def searched(shared):
    """Both workers at once (1 trial each, not scored, each trial pushed), then the reporter clone's
    `--n-trials 0`, which pulls the best trial's experiment and scores it on the test split."""
    from tests.test_e2e import run

    clones, bare, env, tmp = shared
    search = [sys.executable, "-m", "pipeline.search", "search=dist", "--storage", f"sqlite:///{tmp / 'optuna.db'}",
              "--study-name", "dist", "--push", "origin"]
    started = time.monotonic()
    workers = [subprocess.Popen(search + ["--n-trials", "1", "--no-score"], cwd=clone, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for clone in clones[:2]]
    outputs = [w.communicate(timeout=900)[0] for w in workers]
    workers_s = time.monotonic() - started
    for clone, output in zip(clones, outputs):
        (tmp / f"{clone.name}.out").write_text(output)
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-4000:]
    report = run(search + ["--n-trials", "0"], clones[2], env)
    (tmp / "reporter.out").write_text(report)
    return clones, bare, env, tmp, outputs, report, workers_s


def _local_exps(clone: Path) -> set[str]:
    return set(experiments.experiment_revs(clone))


@pytest.mark.e2e
def test_two_workers_share_one_study_and_their_experiments(searched):
    import optuna

    clones, bare, env, tmp, outputs, report, workers_s = searched
    study = optuna.load_study(study_name="dist", storage=f"sqlite:///{tmp / 'optuna.db'}")
    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"] and {t.number for t in trials} == {0, 1}
    assert sum(bool(t.user_attrs.get("defaults")) for t in trials) == 1  # the present settings queued once
    assert all(t.user_attrs["pushed"] for t in trials)
    ran = [_local_exps(clone) for clone in clones[:2]]
    assert sorted(map(len, ran)) == [1, 1] and ran[0] | ran[1] == {"dist-t0", "dist-t1"}  # one trial each
    assert all("shared: " in out for out in outputs)
    remote = subprocess.run(["git", "ls-remote", str(bare), "refs/exps/*"], capture_output=True, text=True,
                            check=True).stdout
    assert all(f"/{name}\n" in remote for name in ("dist-t0", "dist-t1", "dist-best"))
    # the reporter listed them on the remote, pulled the best (refs, outputs, run cache) and scored
    # exactly the model that trial trained: DVC restored finetune instead of training again
    listed = subprocess.run(["dvc", "exp", "list", "origin", "--name-only"], cwd=clones[2], env=env,
                            capture_output=True, text=True, check=True).stdout.split()
    assert {"dist-t0", "dist-t1", "dist-best"} <= set(listed)
    summary = json.loads((clones[2] / "reports/search/dist/summary.json").read_text())
    best_exp = summary["best"]["dvc_exp"]
    assert summary["pushed"] == 2 and summary["test"]["best"]["pushed"] and best_exp in _local_exps(clones[2])
    best_log = (clones[2] / "reports/search/dist/dist-best.log").read_text()
    assert "Running stage 'finetune'" not in best_log and "Stage 'finetune' is cached" in best_log, best_log[-3000:]
    assert "study 'dist': 2 trials, 2 complete, 0 pruned" in report and "shared: 2 of 2 complete trials" in report
    other = ({"dist-t0", "dist-t1"} - {best_exp}).pop()
    subprocess.run(["dvc", "exp", "pull", "origin", other], cwd=clones[2], env=env, check=True, capture_output=True)
    assert {"dist-t0", "dist-t1"} <= _local_exps(clones[2])
    print(f"\ntwo workers, one trial each, at once: {workers_s:.0f} s")


@pytest.mark.e2e
def test_every_trial_is_a_child_of_one_study_run_on_the_server(searched):
    from mlflow.tracking import MlflowClient

    env = searched[2]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("hasat").experiment_id])
    [parent] = [r for r in runs if r.info.run_name == "search-dist"]  # one parent, not one per worker
    assert parent.info.status == "FINISHED" and "test.best.finetuned.chrf" in parent.data.metrics
    children = {r.data.tags["dvc.exp_name"]: r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert set(children) == {"dist-t0", "dist-t1"}
    assert all(c.data.tags["hasat.search.state"] == "COMPLETE" and c.info.status == "FINISHED"
               for c in children.values())
    history = client.get_metric_history(parent.info.run_id, "trial_val_loss")
    assert sorted(m.step for m in history) == [0, 1]  # both workers logged into the same parent
    # the reporter's evaluate attached to the best trial's own run (its run file came with the run cache)
    summary = json.loads((searched[0][2] / "reports/search/dist/summary.json").read_text())
    assert "test.finetuned.chrf" in children[summary["best"]["dvc_exp"]].data.metrics
