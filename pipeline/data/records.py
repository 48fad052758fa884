"""The canonical record every stage after ingest passes on.

SFT records carry `id`, `source` (`file:line`), `meta`, and either the Alpaca fields
`instruction` / `input` / `output` (single turn) or `messages`, a list of
{"role": "system" | "user" | "assistant", "content": str} (multi-turn chat; ShareGPT is
converted to it). Classification records carry `text` and `label` instead.

Preference records carry `prompt` (messages ending with the user's turn) and the answers `chosen`
and `rejected` (texts); KTO rows carry `prompt`, `completion` and `label` (true: desirable).

Tokenized SFT records add `input_ids`, `labels`, `n_prompt_tokens` (tokens before the final
assistant answer: what generation is given), `prompt_text` (the prompt for people to read),
`reference` (the final assistant answer) and `truncated`.
"""

from __future__ import annotations

from typing import Iterator, Mapping, Optional

from pipeline.data.turkish import normalise_for_match
from pipeline.errors import HasatError

ROLES = ("system", "user", "assistant")


def is_chat(record: dict) -> bool:
    return "messages" in record


def is_preference(record: dict) -> bool:
    """A preference pair (prompt, chosen, rejected) or a KTO row (prompt, completion, label)."""
    return isinstance(record.get("prompt"), list) and ("chosen" in record or "completion" in record)


def preference_prompt_text(record: dict) -> str:
    """The prompt's turns for people and for grouping splits (the system prompt left out)."""
    said = [m for m in record["prompt"] if m["role"] != "system"]
    if len(said) == 1:
        return said[0]["content"]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in said)


def row_kind(record: dict) -> Optional[str]:
    """The task kind a record is for: 'sft' (instruction/output or chat), 'classification' (text/label),
    'preference' (prompt with chosen/rejected, or KTO's completion/label)."""
    if is_preference(record):
        return "preference"
    if "messages" in record or "instruction" in record:
        return "sft"
    if "text" in record and "label" in record:
        return "classification"
    return None


ROW_SHAPES = {"sft": "instruction/output or chat rows", "classification": "text/label rows",
              "preference": "prompt/chosen/rejected (or prompt/completion/label) rows"}


def require_rows_of(rows: list[dict], kind: str) -> None:
    """One line naming the task the data needs when a row does not fit task.kind."""
    for row in rows:
        found = row_kind(row)
        if found == kind:
            continue
        where = row.get("source", "the data")
        if found:
            raise HasatError(f"{where}: the data has {ROW_SHAPES[found]}: run with task={found} "
                             f"(task.kind={kind} needs {ROW_SHAPES[kind]})")
        raise HasatError(f"{where}: task.kind={kind} needs {ROW_SHAPES[kind]}, this row has fields "
                         f"{', '.join(sorted(k for k in row if k not in ('id', 'source', 'meta'))) or 'none'} "
                         "(check data.schema and data.columns)")


def user_text(instruction: str, input_text: str) -> str:
    return f"{instruction}\n\n{input_text}" if input_text else instruction


def messages_of(record: dict, system_prompt: Optional[str] = None) -> list[dict]:
    """The conversation, the configured system prompt first unless the record brings its own."""
    if is_chat(record):
        messages = [dict(m) for m in record["messages"]]
    else:
        messages = [{"role": "user", "content": user_text(record["instruction"], record.get("input", ""))}]
        if "output" in record:  # a prompt to answer has none
            messages.append({"role": "assistant", "content": record["output"]})
    if system_prompt and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def reference_of(record: dict) -> str:
    """The final assistant answer: the reference for evaluation."""
    if is_chat(record):
        return next(m["content"] for m in reversed(record["messages"]) if m["role"] == "assistant")
    return record["output"]


def prompt_text_of(record: dict) -> str:
    """Everything said before the final answer, for people and for grouping splits."""
    if not is_chat(record):
        return user_text(record["instruction"], record.get("input", ""))
    messages = record["messages"]
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    said = [m for m in messages[:last] if m["role"] != "system"]
    if len(said) == 1:
        return said[0]["content"]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in said)


def prompt_key(record: dict) -> str:
    """Records whose prompts match after Turkish-aware normalisation share a split group."""
    if is_preference(record):
        return normalise_for_match(preference_prompt_text(record))
    if "text" in record and "label" in record:
        return normalise_for_match(record["text"])
    return normalise_for_match(prompt_text_of(record))


def text_slots(record: dict) -> Iterator[tuple[object, object]]:
    """(container, key) pairs of every free-text field of a record, for cleaning in place."""
    for name in ("instruction", "input", "output", "text", "chosen", "rejected", "completion"):
        if name in record and isinstance(record[name], str):
            yield record, name
    for message in record.get("messages", []):
        yield message, "content"
    if is_preference(record):
        for message in record["prompt"]:
            yield message, "content"


def balanced_class_weights(counts: Mapping[str, int]) -> dict[str, float]:
    """scikit-learn's 'balanced' class weights, by label in sorted order: rows / (classes * rows of the
    class). Clean reports them; finetune weights the classification loss with them."""
    total, classes = sum(counts.values()), len(counts)
    return {label: total / (classes * n) for label, n in sorted(counts.items())}
