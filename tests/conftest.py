import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Stage processes started in a temporary folder import this checkout's `pipeline` (not whichever
# one the environment's editable install points at); a repository copy's own code still comes first.
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def profile(name: str):
    """conf/model/<name>.yaml as a ModelConfig (the schema's defaults are the default profile's)."""
    import yaml

    from pipeline.config import ModelConfig, RandomInitConfig

    values = yaml.safe_load((REPO / "conf" / "model" / f"{name}.yaml").read_text(encoding="utf-8"))
    if values.get("random_init"):
        values["random_init"] = RandomInitConfig(**values["random_init"])
    return ModelConfig(**values)


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2's real tokenizer (chat template, pad == eos) from the offline GGUF package."""
    from pipeline.train.modeling import load_tokenizer

    return load_tokenizer(profile("smollm2_135m"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_tokenizer) -> Path:
    """A randomly initialised 2-layer Llama with SmolLM2's tokenizer, saved as plain HF files."""
    from pipeline.config import RandomInitConfig
    from pipeline.train.modeling import _random_model, save_model_folder

    cfg = profile("tiny_random")
    cfg.random_init = RandomInitConfig()
    model = _random_model(cfg, smollm2_tokenizer, seed=0, dtype=__import__("torch").float32)
    model.generation_config.eos_token_id = smollm2_tokenizer.eos_token_id
    model.generation_config.pad_token_id = smollm2_tokenizer.pad_token_id
    out = tmp_path_factory.mktemp("tiny") / "model"
    save_model_folder(smollm2_tokenizer, model, out)
    return out


def run_stage_cli(*args: str, cwd: Path = REPO, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def copy_config(dest: Path) -> Path:
    """What a stage run outside the repository needs besides its data: params.yaml, conf/ and the
    model profiles' assets (licence notices, chat templates) and the distributed launch configs."""
    shutil.copy(REPO / "params.yaml", dest / "params.yaml")
    for folder in ("conf", "model_assets", "launch"):
        shutil.copytree(REPO / folder, dest / folder)
    return dest


def copy_repo(dest: Path) -> Path:
    """The git-tracked and untracked-not-ignored files of the repo, as a clean clone would have them."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


def free_port() -> int:
    """A localhost port nothing listens on now (for a server a test starts, or one it expects absent)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def edit_conf(root: Path, rel: str, values: dict) -> None:
    """Set `values` ({dotted key: value}) in the copy's conf/<rel> (a test's own settings)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(root / "conf" / rel)
    for key, value in values.items():
        OmegaConf.update(cfg, key, value)
    (root / "conf" / rel).write_text(OmegaConf.to_yaml(cfg))
