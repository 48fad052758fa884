"""Running one search trial as a DVC experiment (`dvc exp run --temp`), watching the validation
losses finetune appends to a file (paths.EVAL_LOG_ENV), stopping it when the pruner says so, and
reading its results back from the experiment's commit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional

from pipeline.errors import HasatError

EXP_REFS = "refs/exps"


def dvc_exp_command(name: str, overrides: list[str], targets: list[str]) -> list[str]:
    """Each trial in its own temporary copy, one after another (`dvc queue start -j>1` is flaky)."""
    return ["dvc", "exp", "run", "--temp", "-n", name, *[a for o in overrides for a in ("-S", o)], *targets]


def new_eval_lines(path: Path, seen: int) -> list[dict]:
    """The validation losses appended since the first `seen` lines (a half-written last line waits)."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)[seen:]
    return [json.loads(line) for line in lines if line.endswith("\n")]


def _interruptible() -> None:
    """In the child: Ctrl-C back to its default. A search started in the background (`nohup ... &`)
    inherits SIGINT ignored, and so would the trial, which `stop` could then only kill hard."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop(process: subprocess.Popen) -> None:
    """Ctrl-C to the whole process group (DVC removes its temporary copy), harder if it lingers."""
    for sig, wait_s in ((signal.SIGINT, 60), (signal.SIGTERM, 30), (signal.SIGKILL, 30)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_experiment(cmd: list[str], cwd: Path, env: dict, log_file: Path, eval_log: Optional[Path] = None,
                   should_stop: Optional[Callable[[int, float], bool]] = None, poll_s: float = 1.0) -> Optional[int]:
    """Run `cmd`, its output into `log_file`. For each validation loss finetune writes to `eval_log`,
    ask `should_stop(step, loss)`; True stops the run and returns None. Else the exit code."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    seen = 0
    with log_file.open("w", encoding="utf-8") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        process = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, preexec_fn=_interruptible)
        try:
            while process.poll() is None:
                time.sleep(poll_s)
                if eval_log is None or should_stop is None:
                    continue
                lines = new_eval_lines(eval_log, seen)
                seen += len(lines)
                if any(should_stop(int(line["step"]), float(line["val_loss"])) for line in lines):
                    stop(process)
                    return None
        except BaseException:  # Ctrl-C or an error in the search: leave no training behind
            stop(process)
            raise
    return process.returncode


def _git(args: list[str], cwd: Path) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"
        raise HasatError(f"git {' '.join(args)}: {last}")
    return result.stdout


def experiment_revs(cwd: Path) -> dict[str, str]:
    """DVC experiment name -> its commit (refs/exps/<baseline>/<name>)."""
    out = _git(["for-each-ref", "--format=%(objectname) %(refname)", EXP_REFS], cwd)
    return {ref.rsplit("/", 1)[-1]: sha for sha, ref in (line.split(" ", 1) for line in out.splitlines())}


def unique_name(base: str, cwd: Path) -> str:
    """`base`, or `base-2`, ... when an experiment of that name exists (a study started afresh)."""
    taken, name, n = set(experiment_revs(cwd)), base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def read_json_at(rev: str, path: str, cwd: Path) -> dict:
    """A git-tracked file (the `cache: false` metrics) as the experiment's commit holds it."""
    return json.loads(_git(["show", f"{rev}:{path}"], cwd))


def copy_output_at(rev: str, path: str, cwd: Path, dest: Path) -> Path:
    """A DVC-cached output (e.g. the predictions) of an experiment's commit, from the local cache."""
    import dvc.api

    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(dvc.api.read(path, repo=str(cwd), rev=rev, mode="rb"))
    return dest


def tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").splitlines() if path.is_file() else []
    return "\n".join(text[-lines:])


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def share(action: str, remote: str, names: list[str], cwd: Path, timeout_s: float = 900) -> Optional[str]:
    """`dvc exp push|pull <remote> <names> --run-cache`: the experiments' git refs, their DVC-cached
    outputs (the default DVC remote) and the run cache, which lets another clone restore a trial's
    finetune outputs instead of training again. None when it worked, else its last line of output."""
    cmd = ["dvc", "exp", action, "--run-cache", remote, *names]
    try:
        result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{' '.join(cmd)}: {err}"
    return None if result.returncode == 0 else f"{' '.join(cmd)}: {_last_line(result.stderr or result.stdout)}"


def cache_git_tracked_outputs(rev: str, cwd: Path) -> int:
    """Put an experiment's `cache: false` outputs (metrics/finetune.json, reports/loss/*.csv) into
    this clone's DVC cache from its git commit. DVC restores a stage from the run cache only when all
    its outputs are in the local cache, these too, but `dvc exp push --run-cache` sends the run records
    and the cached outputs, not these: without them a trial pulled from another machine trains again.
    Only bytes whose md5 is the one dvc.lock records are added. Returns how many were added."""
    import hashlib

    import yaml
    from dvc.repo import Repo

    lock = yaml.safe_load(_git(["show", f"{rev}:dvc.lock"], cwd)) or {}
    added = 0
    with Repo(str(cwd)) as repo:
        odb = repo.cache.local
        for stage in (lock.get("stages") or {}).values():
            for out in stage.get("outs") or []:
                md5 = str(out.get("md5", ""))
                if not md5 or md5.endswith(".dir") or odb.exists(md5):
                    continue
                data = subprocess.run(["git", "show", f"{rev}:{out['path']}"], cwd=cwd, capture_output=True)
                if data.returncode == 0 and hashlib.md5(data.stdout).hexdigest() == md5:
                    odb.add_bytes(md5, data.stdout)
                    added += 1
    return added
