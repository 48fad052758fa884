"""hasat: reproducible fine-tuning of language models on Turkish domain data (see ARCHITECTURE.md)."""

import importlib.util
import os
import sys
from pathlib import Path


def _use_project_environment() -> None:
    """`.venv/bin/dvc repro` without an activated environment runs each stage's `python -m ...`
    with whatever `python` is first on PATH. When that interpreter lacks hasat's dependencies and
    the project's `.venv` exists, re-run the same command line with the `.venv` interpreter;
    otherwise stop with one line that says what to do (not a ModuleNotFoundError)."""
    if importlib.util.find_spec("omegaconf") is not None:
        return
    venv_python = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"
    argv = getattr(sys, "orig_argv", None)
    if venv_python.exists() and argv and not os.environ.get("HASAT_REEXEC"):
        os.environ["HASAT_REEXEC"] = "1"  # once: never loop between interpreters
        os.environ["PATH"] = f"{venv_python.parent}{os.pathsep}{os.environ.get('PATH', '')}"
        os.execv(str(venv_python), [str(venv_python), *argv[1:]])
    sys.exit(f"hasat: {sys.executable} lacks hasat's dependencies (omegaconf): run `make install`, "
             f"then `source .venv/bin/activate` (or use the .venv's python)")


def _tools_of_this_interpreter() -> None:
    """`.venv/bin/python -m pipeline.search` without an activated environment: the `dvc`, `torchrun` and
    `accelerate` it starts must be this environment's, so its bin folder goes first on PATH."""
    bin_dir = Path(sys.executable).parent
    path = os.environ.get("PATH", "").split(os.pathsep)
    if (bin_dir / "dvc").exists() and str(bin_dir) not in path:
        os.environ["PATH"] = os.pathsep.join([str(bin_dir), *path])


_use_project_environment()
_tools_of_this_interpreter()
