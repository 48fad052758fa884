"""bench/gpu_check.py's logic, checked on a CPU with tiny models (--smoke): every section runs or says
why not, the numbers it derives (MFU, ratios, pad shares) follow from what it measured."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import gpu_check  # noqa: E402


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "gpu_check.json"
    results = gpu_check.main(["--smoke", "--peak-tflops", "1.0", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    return results


def test_every_section_reports(smoke):
    assert {"lora_bf16", "qlora_4bit", "packing", "generation"} <= smoke.keys()
    assert smoke["environment"]["device"] == "cpu" and smoke["smoke"] is True
    assert smoke["qlora_4bit"]["skipped"] == "QLoRA needs CUDA"  # said, not silently absent
    assert not any("error" in smoke[name] for name in ("lora_bf16", "packing", "generation"))


def test_training_numbers_and_mfu(smoke):
    for model in ("smollm2_135m", "llama_1b_random"):
        run = smoke["lora_bf16"][model]
        assert run["tokens_per_s"] > 0 and run["matmul_params"] > 0
        # MFU = tokens/s x FLOPs per token / peak (1 TFLOP/s here); 6N counts 1.5x the LoRA passes
        assert 0 < run["mfu"] < run["mfu_6n"] <= 1
        assert run["mfu_6n"] == pytest.approx(1.5 * run["mfu"], rel=0.01)


def test_packing_and_generation_ratios(smoke):
    packing = smoke["packing"]
    assert packing["padded"]["pad_share"] > 0.1 and packing["packed"]["pad_share"] < packing["padded"]["pad_share"]
    assert packing["packed"]["batches"] < packing["padded"]["batches"]
    assert packing["packed_over_padded"] == pytest.approx(
        packing["packed"]["useful_tokens_per_s"] / packing["padded"]["useful_tokens_per_s"], abs=0.01)
    gen = smoke["generation"]
    assert gen["batched_over_single"] == pytest.approx(gen["batch_4"]["tokens_per_s"] / gen["batch_1"]["tokens_per_s"],
                                                       abs=0.01)


def test_flops_per_token_counts_matmuls_and_attention():
    model = gpu_check.llama(gpu_check.LLAMA_SMOKE, gpu_check.torch.float32, gpu_check.torch.device("cpu"))
    shape = gpu_check.LLAMA_SMOKE
    d, i, layers, vocab = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"], shape["vocab_size"]
    kv = d // shape["num_attention_heads"] * shape["num_key_value_heads"]
    matmuls = layers * (2 * d * d + 2 * d * kv + 3 * d * i) + vocab * d
    assert gpu_check.matmul_params(model) == matmuls
    assert gpu_check.flops_per_token(model, 128, passes=3) == 3 * (2 * matmuls + 2 * layers * d * 128)


def test_peak_and_budget():
    assert gpu_check.peak_tflops("NVIDIA H100 80GB HBM3", None) == 989.0
    assert gpu_check.peak_tflops("NVIDIA H100 PCIe", None) == 756.0
    assert gpu_check.peak_tflops("Some GPU", None) is None and gpu_check.peak_tflops("x", 123.0) == 123.0
    results = {}
    gpu_check.section(results, "late", gpu_check.Budget(5), 60, lambda: {"never": 1})
    assert results["late"]["skipped"].startswith("out of time budget")
    gpu_check.section(results, "broken", gpu_check.Budget(60), 1, lambda: 1 / 0)
    assert results["broken"]["error"] == "ZeroDivisionError: division by zero"


def test_without_a_gpu_it_says_so_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "bench/gpu_check.py", "--out", str(tmp_path / "x.json")], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == \
        "gpu_check: no CUDA device (run bench/gpu_check.sh on a GPU machine, or --smoke here)"
    assert subprocess.run(["bash", "-n", "bench/gpu_check.sh"], cwd=REPO).returncode == 0
