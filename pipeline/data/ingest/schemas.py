"""Rows to canonical records (pipeline/data/records.py): Alpaca, chat `messages`, ShareGPT `conversations`
(converted to `messages`) and classification `text` + `label`, after the source's column mapping
(`{talimat: instruction}`) renames user columns. Unless configured, the schema is detected per file
from its header or first rows, then per row: one file may mix the instruction shapes (OpenAI
`messages`, ShareGPT `conversations`, Alpaca), never instruction and classification rows."""

from __future__ import annotations

import hashlib
import json
from itertools import chain, islice
from typing import Any, Iterable, Iterator, Optional, get_args

import orjson

from pipeline.config import DataSchema
from pipeline.data.ingest.rows import Row, RowError
from pipeline.data.records import ROLES
from pipeline.errors import HasatError

SCHEMAS = get_args(DataSchema)
SCHEMA_FIELDS = {  # required, optional canonical fields
    "alpaca": (("instruction", "output"), ("input",)),
    "chat": (("messages",), ()),
    "sharegpt": (("conversations",), ("system",)),
    "classification": (("text", "label"), ()),
    "preference": (("chosen", "rejected"), ("prompt",)),  # no prompt: the shared start of two conversations
    "kto": (("prompt", "completion", "label"), ()),
}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "model": "assistant",
                  "system": "system"}
SCHEMA_PEEK_ROWS = 200
FAMILIES = {"alpaca": "instruction", "chat": "instruction", "sharegpt": "instruction",
            "classification": "classification", "preference": "preference", "kto": "kto"}
DETECT_ORDER = ("chat", "sharegpt", "alpaca", "classification", "preference", "kto")


def rename(item: Any, mapping: dict) -> Any:
    if not mapping or not isinstance(item, dict):
        return item
    renamed = {key: value for key, value in item.items() if key not in mapping}
    for user, canonical in mapping.items():
        if user in item:
            renamed[canonical] = item[user]
    return renamed


def schema_of_columns(columns: Iterable[str]) -> Optional[str]:
    names = set(columns)
    for schema in DETECT_ORDER:
        if set(SCHEMA_FIELDS[schema][0]) <= names:
            return schema
    return None


def _needs(schema: str) -> str:
    return " + ".join(SCHEMA_FIELDS[schema][0])


def row_schema(item: Any, file_schema: str) -> str:
    """The schema of one row of a file whose schema was detected as `file_schema`: the file's when the
    row has its fields, else another of the same family that it fits. A row that fits none is judged
    by the schema whose fields it has some of (so its reason names what is missing), and a row with
    none of any schema's fields is rejected as such."""
    if not isinstance(item, dict):
        return file_schema
    present = {key for key, value in item.items() if value is not None}
    fits = [s for s in DETECT_ORDER if set(SCHEMA_FIELDS[s][0]) <= present]
    family = FAMILIES[file_schema]
    if file_schema in fits:
        return file_schema
    same = [s for s in fits if FAMILIES[s] == family]
    if same:
        return same[0]
    if fits:
        raise RowError("other_schema", f"a {fits[0]} row ({_needs(fits[0])}) among {file_schema} rows: "
                                       f"one file holds {family} rows or {FAMILIES[fits[0]]} rows, not both")
    partly = [s for s in DETECT_ORDER if any(f in item for group in SCHEMA_FIELDS[s] for f in group)]
    if file_schema in partly:
        return file_schema
    same = [s for s in partly if FAMILIES[s] == family]
    if same:
        return same[0]
    found = ", ".join(sorted(map(str, item))[:12]) or "no fields"
    raise RowError("no_schema", f"row fits no schema: it needs {' or '.join(_needs(s) for s in DETECT_ORDER)} "
                                f"(found: {found})")


def peek_schema(rows: Iterator[Row], name: str) -> tuple[str, Iterator[Row]]:
    """Detect the schema from the first rows that are objects; hand all rows back."""
    head = list(islice(rows, SCHEMA_PEEK_ROWS))
    seen: set[str] = set()
    for row in head:
        if isinstance(row.item, dict):
            seen.update(row.item)
            schema = schema_of_columns(row.item)
            if schema:
                return schema, chain(head, rows)
    if not head:
        raise HasatError(f"{name}: file is empty (no data rows)")
    found = ", ".join(sorted(seen)[:12]) or "no JSON objects"
    raise HasatError(f"{name}: cannot tell the schema: rows have no instruction+output, messages, conversations or "
                     f"text+label (found: {found}); set the source's schema or map columns")


def check_columns(name: str, columns: list[str], mapping: dict, schema: str) -> None:
    """A header (CSV, Parquet, HF) is checked once, before any row: a wrong mapping fails the file."""
    missing = [user for user in mapping if user not in columns]
    if missing:
        raise HasatError(f"{name}: mapped column(s) {', '.join(repr(m) for m in missing)} not found "
                         f"(columns: {', '.join(columns)})")
    renamed = [mapping.get(c, c) for c in columns]
    lacking = [f for f in SCHEMA_FIELDS[schema][0] if f not in renamed]
    if lacking:
        raise HasatError(f"{name}: header lacks column(s) {', '.join(lacking)} for schema {schema} "
                         f"(found: {', '.join(columns)}); map yours with the source's columns")


def _expect_text(item: dict, name: str, optional: bool = False) -> str:
    value = item.get(name)
    if value is None:
        if optional:
            return ""
        raise RowError("missing_field", f"missing field '{name}'")
    if not isinstance(value, str):
        raise RowError("wrong_type", f"field '{name}' is {type(value).__name__}, expected text")
    return value


def _as_list(value: Any, name: str) -> list:
    if isinstance(value, str) and value.lstrip().startswith("["):  # CSV / Parquet cells holding JSON
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise RowError("invalid_json", f"field '{name}' holds invalid JSON (column {err.colno}: {err.msg})")
    if not isinstance(value, list) or not value:
        raise RowError("bad_conversation", f"field '{name}' must be a non-empty list of messages")
    return value


def _message(turn: Any, index: int, name: str) -> dict:
    if not isinstance(turn, dict):
        raise RowError("bad_conversation", f"{name}[{index}] is {type(turn).__name__}, expected an object")
    if "role" in turn or "content" in turn:
        role, content = turn.get("role"), turn.get("content")
    else:  # ShareGPT's from/value
        speaker, content = turn.get("from"), turn.get("value")
        role = SHAREGPT_ROLES.get(str(speaker).strip().lower()) if speaker is not None else None
        if role is None:
            raise RowError("bad_conversation", f"{name}[{index}]: unknown speaker {speaker!r} "
                                               f"(known: {', '.join(sorted(SHAREGPT_ROLES))})")
    if role not in ROLES:
        raise RowError("bad_conversation", f"{name}[{index}]: unknown role {role!r} (known: {', '.join(ROLES)})")
    if not isinstance(content, str):
        raise RowError("bad_conversation", f"{name}[{index}]: content is "
                                           f"{'missing' if content is None else type(content).__name__}, expected text")
    return {"role": role, "content": content}


def _conversation(turns: list, name: str, system: Optional[str] = None) -> list[dict]:
    messages = [_message(turn, i, name) for i, turn in enumerate(turns)]
    if system:
        if messages[0]["role"] == "system":
            raise RowError("bad_conversation", "both a 'system' field and a system message")
        messages.insert(0, {"role": "system", "content": system})
    roles = [m["role"] for m in messages]
    if "system" in roles[1:]:
        raise RowError("bad_conversation", f"system message at position {roles.index('system', 1)}; only the first may be")
    if "user" not in roles or "assistant" not in roles:
        raise RowError("bad_conversation", "a conversation needs a user and an assistant message")
    if roles[-1] != "assistant":
        raise RowError("bad_conversation", "conversation does not end with an assistant message")
    return messages


def _label(item: dict) -> str:
    label = item.get("label")
    if label is None:
        raise RowError("missing_field", "missing field 'label'")
    if isinstance(label, bool) or not isinstance(label, (str, int)):
        raise RowError("wrong_type", f"field 'label' is {type(label).__name__}, expected text or an integer")
    return str(label)


def _fields(item: dict, schema: str) -> dict:
    if schema == "alpaca":
        return {"instruction": _expect_text(item, "instruction"), "input": _expect_text(item, "input", True),
                "output": _expect_text(item, "output")}
    if schema == "chat":
        if item.get("messages") is None:
            raise RowError("missing_field", "missing field 'messages'")
        return {"messages": _conversation(_as_list(item["messages"], "messages"), "messages")}
    if schema == "sharegpt":
        if item.get("conversations") is None:
            raise RowError("missing_field", "missing field 'conversations'")
        system = item.get("system")
        if system is not None and not isinstance(system, str):
            raise RowError("wrong_type", f"field 'system' is {type(system).__name__}, expected text")
        return {"messages": _conversation(_as_list(item["conversations"], "conversations"), "conversations", system)}
    if schema in ("preference", "kto"):
        return _preference_fields(item, schema)
    label = _label(item)  # checked before the text, so a row lacking both is rejected for its label
    return {"text": _expect_text(item, "text"), "label": label}


def _prompt(value: Any) -> list[dict]:
    """A preference prompt as messages ending with the user's turn (a plain text is one user turn)."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    messages = [_message(turn, i, "prompt") for i, turn in enumerate(_as_list(value, "prompt"))]
    if messages[-1]["role"] != "user":
        raise RowError("bad_conversation", "prompt does not end with a user message")
    return messages


def _answer(value: Any, name: str) -> str:
    """A chosen/rejected/completion answer: a text, or a list holding one assistant message."""
    if isinstance(value, str):
        return value
    turns = [_message(turn, i, name) for i, turn in enumerate(_as_list(value, name))]
    if len(turns) != 1 or turns[0]["role"] != "assistant":
        raise RowError("bad_conversation", f"field '{name}' must be one assistant message (with a separate prompt)")
    return turns[0]["content"]


def _implicit_prompt(item: dict) -> tuple[list[dict], str, str]:
    """(prompt, chosen, rejected) from two full conversations that differ only in the last answer."""
    chosen = _conversation(_as_list(item["chosen"], "chosen"), "chosen")
    rejected = _conversation(_as_list(item["rejected"], "rejected"), "rejected")
    if chosen[:-1] != rejected[:-1]:
        raise RowError("bad_conversation", "without a 'prompt', chosen and rejected must share every turn but the last")
    return chosen[:-1], chosen[-1]["content"], rejected[-1]["content"]


def _kto_label(item: dict) -> bool:
    label = item.get("label")
    if isinstance(label, bool):
        return label
    if isinstance(label, (int, str)) and str(label).strip().lower() in ("1", "0", "true", "false"):
        return str(label).strip().lower() in ("1", "true")
    raise RowError("wrong_type", f"field 'label' is {label!r}; KTO needs true/false (desirable or not)")


def _preference_fields(item: dict, schema: str) -> dict:
    if schema == "kto":
        for name in SCHEMA_FIELDS["kto"][0]:
            if item.get(name) is None:
                raise RowError("missing_field", f"missing field '{name}'")
        return {"prompt": _prompt(item["prompt"]), "completion": _answer(item["completion"], "completion"),
                "label": _kto_label(item)}
    for name in ("chosen", "rejected"):
        if item.get(name) is None:
            raise RowError("missing_field", f"missing field '{name}'")
    if item.get("prompt") is None:
        prompt, chosen, rejected = _implicit_prompt(item)
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    return {"prompt": _prompt(item["prompt"]), "chosen": _answer(item["chosen"], "chosen"),
            "rejected": _answer(item["rejected"], "rejected")}


def record_id(fields: dict) -> str:
    return hashlib.sha1(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]


def to_record(item: Any, source: str, schema: str = "alpaca") -> dict:
    """Validate one parsed row as a record of `schema`; raise RowError with the reject reason."""
    if not isinstance(item, dict):
        raise RowError("not_an_object", f"expected an object with fields "
                                        f"{', '.join(SCHEMA_FIELDS[schema][0])}, found {type(item).__name__}")
    fields = _fields(item, schema)
    used = set(SCHEMA_FIELDS[schema][0]) | set(SCHEMA_FIELDS[schema][1])
    meta = {key: value for key, value in item.items() if key not in used}
    return {"id": record_id(fields), "source": source, **fields, "meta": meta}
