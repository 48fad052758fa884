import pytest
import torch

from pipeline.errors import HasatError
from pipeline.train.prompts import IGNORE_INDEX, alpaca_prompt, encode, tokenize_records

RECORD = {"id": "x", "source": "f.jsonl:1", "instruction": "Buğday ne zaman ekilir?", "input": "",
          "output": "İç Anadolu'da ekim ayında ekilir."}
SYSTEM = "Sen bir tarım asistanısın."


def trained_text(tokenizer, enc):
    return tokenizer.decode([t for t, l in zip(enc.input_ids, enc.labels) if l != IGNORE_INDEX])


def test_chat_template_masks_prompt_and_keeps_eos_label(smollm2_tokenizer):
    tok = smollm2_tokenizer
    assert tok.pad_token_id == tok.eos_token_id  # the trap this guards against
    enc = encode(RECORD, tok, "chat_template", SYSTEM, False, 384, "drop")
    assert trained_text(tok, enc) == RECORD["output"] + "<|im_end|>"
    assert enc.labels[-1] == tok.eos_token_id
    assert all(label == IGNORE_INDEX for label in enc.labels[:enc.n_prompt_tokens])
    prompt = tok.decode(enc.input_ids[:enc.n_prompt_tokens])
    assert prompt == (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{RECORD['instruction']}"
                      "<|im_end|>\n<|im_start|>assistant\n")


def test_eos_label_survives_padding_by_the_collator(smollm2_tokenizer):
    from transformers import DataCollatorForSeq2Seq

    from pipeline.train.packing import to_features

    tok = smollm2_tokenizer
    short = encode(RECORD, tok, "chat_template", None, False, 384, "drop")
    long = encode({**RECORD, "output": RECORD["output"] * 3}, tok, "chat_template", None, False, 384, "drop")
    rows = [{"input_ids": e.input_ids, "labels": e.labels} for e in (short, long)]
    batch = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=IGNORE_INDEX)(to_features(rows))
    first = batch["labels"][0]
    assert (first == tok.eos_token_id).sum() == 1          # EOS trained once ...
    assert (batch["input_ids"][0] == tok.eos_token_id).sum() > 1  # ... though pad == eos fills the row
    assert torch.equal(first[len(short.labels):], torch.full_like(first[len(short.labels):], IGNORE_INDEX))


def test_alpaca_prompt_matches_the_seed():
    assert alpaca_prompt({"instruction": "Calculate the area.", "input": ""}) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nCalculate the area.\n\n### Response:\n")
    with_input = alpaca_prompt({"instruction": "Özetle.", "input": "Metin"})
    assert "\n\n### Input:\nMetin\n\n### Response:\n" in with_input


def test_alpaca_encoding_trains_answer_and_eos(smollm2_tokenizer):
    enc = encode(RECORD, smollm2_tokenizer, "alpaca", None, False, 384, "drop")
    assert trained_text(smollm2_tokenizer, enc) == RECORD["output"] + "<|im_end|>"


def test_train_on_inputs_labels_everything(smollm2_tokenizer):
    enc = encode(RECORD, smollm2_tokenizer, "chat_template", None, True, 384, "drop")
    assert enc.labels == enc.input_ids


def test_truncation_policies_are_counted(smollm2_tokenizer):
    tok = smollm2_tokenizer
    long_record = {**RECORD, "id": "y", "source": "f.jsonl:2", "output": "Toprak işleme önemlidir. " * 40}
    records = [RECORD, long_record]
    dropped = tokenize_records(records, tok, "chat_template", None, False, 80, "drop")
    assert dropped.counts["dropped_too_long"] == 1 and len(dropped.records) == 1
    assert dropped.rejects[0]["source"] == "f.jsonl:2" and "too long" in dropped.rejects[0]["reason"]
    cut = tokenize_records(records, tok, "chat_template", None, False, 80, "truncate")
    assert cut.counts["truncated"] == 1 and max(len(r["input_ids"]) for r in cut.records) == 80
    with pytest.raises(HasatError, match="f.jsonl:2"):
        tokenize_records(records, tok, "chat_template", None, False, 80, "error")


def test_chat_record_uses_its_final_answer_and_own_system_prompt(smollm2_tokenizer):
    tok = smollm2_tokenizer
    chat = {"id": "c", "source": "c.jsonl:1", "messages": [
        {"role": "system", "content": "Kısa yanıtla."},
        {"role": "user", "content": "Arpa ne zaman ekilir?"},
        {"role": "assistant", "content": "Sonbaharda."},
        {"role": "user", "content": "Peki yulaf?"},
        {"role": "assistant", "content": "İlkbaharda da ekilebilir."}]}
    result = tokenize_records([chat], tok, "chat_template", SYSTEM, False, 384, "drop")
    row = result.records[0]
    assert row["reference"] == "İlkbaharda da ekilebilir."
    assert row["prompt_text"] == "user: Arpa ne zaman ekilir?\n\nassistant: Sonbaharda.\n\nuser: Peki yulaf?"
    prompt = tok.decode(row["input_ids"][:row["n_prompt_tokens"]])
    assert prompt.startswith("<|im_start|>system\nKısa yanıtla.<|im_end|>") and SYSTEM not in prompt
    assert prompt.endswith("<|im_start|>user\nPeki yulaf?<|im_end|>\n<|im_start|>assistant\n")
    alpaca = tokenize_records([chat], tok, "alpaca", None, False, 384, "drop")
    assert alpaca.counts["dropped_unformattable"] == 1 and "multi-turn" in alpaca.rejects[0]["reason"]


MULTI = {"id": "m", "source": "m.jsonl:1", "messages": [
    {"role": "user", "content": "Arpa ne zaman ekilir?"},
    {"role": "assistant", "content": "Sonbaharda ekilir."},
    {"role": "user", "content": "Peki yulaf?"},
    {"role": "assistant", "content": "İlkbaharda da ekilebilir."}]}


def trained_runs(tokenizer, enc):
    """Decoded runs of consecutive trained tokens: one per assistant turn."""
    runs, current = [], []
    for token, label in zip(enc.input_ids, enc.labels):
        if label != IGNORE_INDEX:
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    return runs + ([tokenizer.decode(current)] if current else [])


@pytest.mark.parametrize("prompt_format, stop", [
    ("chat_template", "<|im_end|>"), ("chatml", "<|im_end|>"), ("phi3", "<|im_end|>"),
    ("llama3", "<|eot_id|><|im_end|>")])
def test_every_assistant_turn_is_trained_and_ends_with_its_stop(smollm2_tokenizer, prompt_format, stop):
    tok = smollm2_tokenizer
    enc = encode(MULTI, tok, prompt_format, SYSTEM, False, 384, "drop")
    assert trained_runs(tok, enc) == [f"Sonbaharda ekilir.{stop}", f"İlkbaharda da ekilebilir.{stop}"]
    assert enc.trained_turns == 2 and enc.labels[-1] == tok.eos_token_id
    # the generation prompt is exactly the tokens before the final answer
    from pipeline.train.prompts import prompt_ids
    assert prompt_ids(MULTI, tok, prompt_format, SYSTEM) == enc.input_ids[:enc.n_prompt_tokens]


def test_markup_formats_render_as_documented(smollm2_tokenizer):
    tok = smollm2_tokenizer
    record = {"instruction": "Can you explain what gravity is in simple terms?", "input": "",
              "output": "Absolutely! Gravity is a force that pulls objects toward each other."}
    phi3 = tok.decode(encode({**record, "source": "s"}, tok, "phi3", None, False, 384, "drop").input_ids)
    assert phi3 == ("<|User|>\nCan you explain what gravity is in simple terms?\n\n<|Assistant|>\n"
                    "Absolutely! Gravity is a force that pulls objects toward each other.<|im_end|>")
    chatml = tok.decode(encode({**record, "source": "s"}, tok, "chatml", "Kısa yanıtla.", False, 384, "drop").input_ids)
    assert chatml == ("<|im_start|>system\nKısa yanıtla.<|im_end|>\n<|im_start|>user\nCan you explain what gravity "
                      "is in simple terms?<|im_end|>\n<|im_start|>assistant\nAbsolutely! Gravity is a force that "
                      "pulls objects toward each other.<|im_end|>")
    llama3 = tok.decode(encode({**record, "source": "s"}, tok, "llama3", None, False, 384, "drop").input_ids)
    assert llama3.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nCan you")
    assert llama3.endswith("<|start_header_id|>assistant<|end_header_id|>\n\nAbsolutely! Gravity is a force that "
                           "pulls objects toward each other.<|eot_id|><|im_end|>")


def test_train_on_inputs_trains_user_turns_too(smollm2_tokenizer):
    enc = encode(MULTI, smollm2_tokenizer, "chatml", None, True, 384, "drop")
    assert enc.labels == enc.input_ids
