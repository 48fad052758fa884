"""Prompt formats and label masking for instruction tuning.

A conversation is rendered as segments of text, each either trained (assistant answers, each
closed by the token generation stops at) or masked with -100 (system and user turns, template
scaffolding). In a multi-turn chat every assistant turn is trained. The prompt of the final
answer is tokenized exactly as generation will see it.

Labels come from the segments, never from pad positions: SmolLM2's pad token *is* its EOS
token, and masking "all pads" would teach the model never to stop.

Formats: the model's own `chat_template` (default), `alpaca` (exactly as the seed documents it,
with and without `### Input:`), `phi3` (`<|User|>` / `<|Assistant|>`), `chatml`, `llama3`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Optional, Union, get_args

from pipeline.config import PromptFormat
from pipeline.data.records import is_chat, messages_of, prompt_text_of, reference_of
from pipeline.errors import HasatError
from pipeline.train.lengths import check_drop_share, resolve_max_seq_len

IGNORE_INDEX = -100
PROMPT_FORMATS = get_args(PromptFormat)

ALPACA_HEADER = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)

# role -> (text before the content, text after it); "{eos}" stands for the tokenizer's EOS token.
TURN_MARKUP = {
    "phi3": {"system": ("<|System|>\n", "\n\n"), "user": ("<|User|>\n", "\n\n"),
             "assistant": ("<|Assistant|>\n", "{eos}\n\n")},
    "chatml": {"system": ("<|im_start|>system\n", "<|im_end|>\n"), "user": ("<|im_start|>user\n", "<|im_end|>\n"),
               "assistant": ("<|im_start|>assistant\n", "<|im_end|>\n")},
    "llama3": {"system": ("<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>"),
               "user": ("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>"),
               "assistant": ("<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>")},
}
BEGIN_MARKUP = {"llama3": "<|begin_of_text|>"}


@dataclass
class Segment:
    text: str
    trained: bool


def prompt_messages(record: dict, system_prompt: Optional[str]) -> list[dict]:
    """The conversation up to (not including) the final assistant answer."""
    messages = messages_of(record, system_prompt)
    answers = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    return messages[:answers[-1]] if answers else messages


def alpaca_fields(record: dict) -> dict:
    if not is_chat(record):
        return record
    said = [m for m in record["messages"] if m["role"] != "system"]
    if len(said) > 2:
        raise ValueError("multi-turn chat cannot be written in the alpaca prompt format")
    return {"instruction": said[0]["content"], "input": ""}


def alpaca_prompt(record: dict) -> str:
    """The Alpaca prompt exactly as the seed documents it (rasbt ch07 `format_input` + response header)."""
    text = f"{ALPACA_HEADER}\n\n### Instruction:\n{record['instruction']}"
    if record.get("input"):
        text += f"\n\n### Input:\n{record['input']}"
    return text + "\n\n### Response:\n"


def _split_after_stop(answer: str, stop: str) -> tuple[str, str]:
    """(trained part up to and including the last stop token, the untrained rest)."""
    cut = answer.rfind(stop)
    return (answer, "") if cut < 0 else (answer[: cut + len(stop)], answer[cut + len(stop):])


def chat_template_segments(messages: list[dict], tokenizer, with_final_answer: bool) -> list[Segment]:
    """Segments from the model's own template, found by rendering the conversation turn by turn."""
    if not tokenizer.chat_template:
        raise HasatError("task.prompt_format=chat_template but the tokenizer has no chat template "
                         "(pick alpaca, phi3, chatml or llama3)")
    render = lambda msgs, gen: tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
    segments, done = [], ""
    answer_at = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    for i in answer_at:
        prefix, full = render(messages[:i], True), render(messages[: i + 1], False)
        if not (prefix.startswith(done) and full.startswith(prefix)):
            raise HasatError("the model's chat template does not render turns as a growing prefix, so answers "
                             "cannot be located; set task.prompt_format to chatml, llama3, phi3 or alpaca")
        trained, rest = _split_after_stop(full[len(prefix):], tokenizer.eos_token)
        segments += [Segment(prefix[len(done):], False), Segment(trained, True)]
        done = full[: len(full) - len(rest)]
    if not with_final_answer:
        last_prompt = render(messages, True)
        return segments + [Segment(last_prompt[len(done):], False)]
    return segments


def markup_segments(messages: list[dict], prompt_format: str, eos: str, with_final_answer: bool) -> list[Segment]:
    markup = TURN_MARKUP[prompt_format]
    segments = [Segment(BEGIN_MARKUP.get(prompt_format, ""), False)]
    for message in messages:
        before, after = markup[message["role"]]
        after = after.replace("{eos}", eos)
        if message["role"] == "assistant":
            trained, rest = _split_after_stop(message["content"] + after, after.rstrip("\n") or eos)
            segments += [Segment(before, False), Segment(trained, True), Segment(rest, False)]
        else:
            segments.append(Segment(before + message["content"] + after, False))
    if not with_final_answer:
        segments.append(Segment(markup["assistant"][0], False))
    return segments


def conversation_segments(record: dict, tokenizer, prompt_format: str, system_prompt: Optional[str],
                          with_final_answer: bool = True) -> list[Segment]:
    """The record as masked/trained segments; without the final answer it is the generation prompt."""
    if prompt_format == "alpaca":
        fields = alpaca_fields(record)
        segments = [Segment(alpaca_prompt(fields), False)]
        return segments + [Segment(reference_of(record) + tokenizer.eos_token, True)] if with_final_answer \
            else segments
    messages = messages_of(record, system_prompt) if with_final_answer else prompt_messages(record, system_prompt)
    if prompt_format == "chat_template":
        return chat_template_segments(messages, tokenizer, with_final_answer)
    return markup_segments(messages, prompt_format, tokenizer.eos_token, with_final_answer)


def _ids(tokenizer, text: str, first: bool, prompt_format: str) -> list[int]:
    # Alpaca and phi3 are plain text: let the tokenizer add its BOS, if it has one, at the start.
    add_special = first and prompt_format in ("alpaca", "phi3")
    return tokenizer(text, add_special_tokens=add_special)["input_ids"] if text or add_special else []


def _stop_ids(ids: list[int], tokenizer) -> list[int]:
    """A trained answer must end with the token generation stops at: add EOS if markup did not."""
    return ids if ids and ids[-1] == tokenizer.eos_token_id else ids + [tokenizer.eos_token_id]


def segment_ids(segments: list[Segment], tokenizer, prompt_format: str) -> list[tuple[list[int], bool]]:
    """Token ids per segment; the same ids for training and for a generation prompt's history."""
    out = []
    for i, segment in enumerate(segments):
        ids = _ids(tokenizer, segment.text, i == 0, prompt_format)
        out.append((_stop_ids(ids, tokenizer) if segment.trained else ids, segment.trained))
    return out


def prompt_ids(record: dict, tokenizer, prompt_format: str, system_prompt: Optional[str]) -> list[int]:
    """Token ids of the prompt, ending where the model's answer starts (what generation is given)."""
    segments = conversation_segments(record, tokenizer, prompt_format, system_prompt, with_final_answer=False)
    return [t for ids, _ in segment_ids(segments, tokenizer, prompt_format) for t in ids]


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    n_prompt_tokens: int
    truncated: bool
    trained_turns: int


def encode_full(record: dict, tokenizer, prompt_format: str, system_prompt: Optional[str],
                train_on_inputs: bool) -> Encoded:
    """Encode one record at its full length; raise ValueError (a reject reason) when it cannot be formatted."""
    segments = conversation_segments(record, tokenizer, prompt_format, system_prompt)
    last_trained = max(i for i, s in enumerate(segments) if s.trained)
    input_ids: list[int] = []
    labels: list[int] = []
    n_prompt_tokens = 0
    for ids, trained in segment_ids(segments[: last_trained + 1], tokenizer, prompt_format):  # nothing after
        if trained:
            n_prompt_tokens = len(input_ids)
        input_ids += ids
        labels += ids if trained or train_on_inputs else [IGNORE_INDEX] * len(ids)
    return Encoded(input_ids, labels, n_prompt_tokens, False, sum(s.trained for s in segments))


def fit_length(enc: Encoded, source: str, max_seq_len: int, truncation: str) -> Encoded:
    """The encoded record within max_seq_len as `truncation` says; ValueError (a reject reason) to drop it."""
    if len(enc.input_ids) <= max_seq_len:
        return enc
    if truncation == "error":
        raise HasatError(f"{source}: {len(enc.input_ids)} tokens > tokenize.max_seq_len={max_seq_len} "
                         "(tokenize.truncation=error)")
    if truncation == "drop":
        raise ValueError(f"too long: {len(enc.input_ids)} tokens > max_seq_len {max_seq_len}")
    if enc.n_prompt_tokens >= max_seq_len:
        raise ValueError(f"too long: prompt alone is {enc.n_prompt_tokens} tokens >= max_seq_len {max_seq_len}")
    return Encoded(enc.input_ids[:max_seq_len], enc.labels[:max_seq_len], enc.n_prompt_tokens, True,
                   enc.trained_turns)


def encode(record: dict, tokenizer, prompt_format: str, system_prompt: Optional[str],
           train_on_inputs: bool, max_seq_len: int, truncation: str) -> Encoded:
    """Encode one record within max_seq_len; raise ValueError (a reject reason) when it cannot be used."""
    enc = encode_full(record, tokenizer, prompt_format, system_prompt, train_on_inputs)
    return fit_length(enc, record.get("source", "record"), max_seq_len, truncation)


@dataclass
class TokenizeResult:
    records: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    lengths: list[int] = field(default_factory=list)  # of the rows kept, after truncation
    full_lengths: list[int] = field(default_factory=list)  # of every formattable row, before the length limit
    max_seq_len: int = 0  # the limit applied (`auto` resolved)
    answer_words: int = 0
    answer_tokens: int = 0


def reject_row(record: dict, reason: str) -> dict:
    """The stage writes it through pipeline.data.rejects (not imported here: finetune imports this module)."""
    return {"source": record["source"], "reason": reason, "id": record["id"],
            "raw": {k: v for k, v in record.items() if k not in ("id", "source")}}


def tokenize_records(records: list[dict], tokenizer, prompt_format: str, system_prompt: Optional[str],
                     train_on_inputs: bool, max_seq_len: Union[int, str], truncation: str,
                     max_drop_share: float = 1.0, context_length: Optional[int] = None) -> TokenizeResult:
    """Encode every record, then apply the length limit (`auto`: the one that keeps 1 - max_drop_share of
    the rows, capped by context_length); stop when the limit drops more than max_drop_share of them."""
    result = TokenizeResult()
    result.counts["rows_in"] = len(records)
    encoded = []
    for record in records:
        try:
            encoded.append((record, encode_full(record, tokenizer, prompt_format, system_prompt, train_on_inputs)))
        except ValueError as err:
            result.counts["dropped_unformattable"] += 1
            result.rejects.append(reject_row(record, str(err)))
    result.full_lengths = [len(enc.input_ids) for _, enc in encoded]
    result.max_seq_len = resolve_max_seq_len(max_seq_len, result.full_lengths, max_drop_share, context_length)
    for record, full in encoded:
        try:
            enc = fit_length(full, record["source"], result.max_seq_len, truncation)
        except ValueError as err:
            result.counts["dropped_too_long"] += 1
            result.rejects.append(reject_row(record, str(err)))
            continue
        result.counts["truncated"] += enc.truncated
        result.counts["trained_turns"] += enc.trained_turns
        result.counts["trained_tokens"] += sum(label != IGNORE_INDEX for label in enc.labels)
        result.lengths.append(len(enc.input_ids))
        reference = reference_of(record)
        result.answer_words += len(reference.split())
        result.answer_tokens += len(tokenizer(reference, add_special_tokens=False)["input_ids"])
        result.records.append({**record, "prompt_text": prompt_text_of(record), "reference": reference,
                               "input_ids": enc.input_ids, "labels": enc.labels,
                               "n_prompt_tokens": enc.n_prompt_tokens, "truncated": enc.truncated})
    result.counts["rows_out"] = len(result.records)
    check_drop_share(result.counts["dropped_too_long"], result.full_lengths, result.max_seq_len, max_drop_share,
                     context_length)
    return result
