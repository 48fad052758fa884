"""Read training data of any common shape into canonical records (see pipeline/data/records.py).

Formats: JSONL, JSON array, CSV/TSV (delimiter sniffed: `,` `;` tab `|`; quoted fields may hold
newlines), Parquet, and Hugging Face datasets (a hub name, a `save_to_disk` folder, or a folder of
data files through `datasets.load_dataset`). Schemas: Alpaca (`instruction`/`input`/`output`), chat
`messages` (`role`/`content`), ShareGPT `conversations` (`from`/`value`, converted to `messages`) and
classification `text` + `label`; detected per file unless configured, after the source's column
mapping (`{talimat: instruction}`) renames user columns. Text files are decoded with the detected
encoding (pipeline/data/encoding.py) and read as a stream.

Every row read ends in exactly one place: a record, or a reject {"source", "reason", "raw"} whose
`source` is `file:line` (JSONL), `file:item N` (JSON array) or `file:row N` (CSV, Parquet, HF).
A file that cannot be used at all raises HasatError naming it (and the line/column where it applies).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import orjson

from pipeline.data.encoding import BAD_BYTE_RE, SURROGATE_RE, Detected, detect_encoding, first_bad_byte, open_text
from pipeline.errors import HasatError
from pipeline.data.records import ROLES

FORMATS_BY_SUFFIX = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
                     ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet"}
FORMATS = ("auto", "jsonl", "json", "csv", "tsv", "parquet", "hf")
SCHEMAS = ("auto", "alpaca", "chat", "sharegpt", "classification")
SCHEMA_FIELDS = {  # required, optional canonical fields
    "alpaca": (("instruction", "output"), ("input",)),
    "chat": (("messages",), ()),
    "sharegpt": (("conversations",), ("system",)),
    "classification": (("text", "label"), ()),
}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "model": "assistant",
                  "system": "system"}
CSV_DELIMITERS = (",", ";", "\t", "|")
SCHEMA_PEEK_ROWS = 200
HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long answers are fine; the length filter judges them


class RowError(ValueError):
    """A row that cannot become a record: `code` groups it in the stats, the message is the reason."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class Source:
    """One configured source. `path` is a file or folder (relative to the data root), or for format
    `hf` a local dataset folder or a hub dataset name."""

    path: str
    format: str = "auto"
    schema: str = "auto"
    encoding: str = "auto"
    columns: dict = field(default_factory=dict)  # user column -> canonical field
    weight: Optional[float] = None  # sampling weight: 0.25 keeps ~a quarter of the rows, 2.0 repeats each twice
    delimiter: Optional[str] = None  # CSV only; None sniffs
    split: str = "train"  # hf only
    config: Optional[str] = None  # hf only: the dataset's configuration (subset) name


@dataclass
class FileStats:
    format: str = ""
    schema: str = ""
    encoding: str = ""
    read: int = 0
    kept: int = 0
    rejected: int = 0
    sampled_out: int = 0
    copies_added: int = 0
    weight: float = 1.0
    reasons: Counter = field(default_factory=Counter)
    first_reject: dict = field(default_factory=dict)  # code -> source of its first row

    @property
    def invalid(self) -> int:
        return self.rejected - self.sampled_out


@dataclass
class IngestStats:
    files: dict = field(default_factory=dict)  # name -> FileStats

    def totals(self) -> dict:
        keys = ("read", "kept", "rejected", "sampled_out", "copies_added")
        return {key: sum(getattr(s, key) for s in self.files.values()) for key in keys}

    def reasons(self) -> Counter:
        return sum((s.reasons for s in self.files.values()), Counter())


@dataclass
class IngestResult:
    records: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    stats: IngestStats = field(default_factory=IngestStats)

    @property
    def rows_read_by_file(self) -> dict[str, int]:
        return {name: s.read for name, s in self.stats.files.items()}


Row = tuple[str, Any, str]  # (source, parsed item or RowError, raw text)


# ---------------------------------------------------------------- finding the files


def _is_hf_folder(path: Path) -> bool:
    return path.is_dir() and any((path / marker).is_file() for marker in HF_MARKERS)


def list_input_files(path: str | Path) -> list[Path]:
    """The data files under `path` (a file or a folder), sorted; dotfiles ignored. A folder written
    by `datasets.save_to_disk` counts as one item."""
    path = Path(path)
    if not path.exists():
        raise HasatError(f"{path}: data path not found (config key data.path)")
    if path.is_file() or _is_hf_folder(path):
        return [path]
    found: list[Path] = []
    for child in sorted(path.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir():
            found.extend(list_input_files(child) if any(child.iterdir()) else [])
        elif child.is_file():
            found.append(child)
    if not found:
        raise HasatError(f"{path}: folder holds no data files (config key data.path)")
    return found


def detect_format(path: Path, configured: str) -> str:
    if configured != "auto":
        return configured
    if _is_hf_folder(path):
        return "hf"
    fmt = FORMATS_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMATS_BY_SUFFIX))
        raise HasatError(f"{path}: unknown data format '{path.suffix or '(no extension)'}' (expected one of {known}, "
                         "or set the source's format)")
    return fmt


def resolve_sources(root: str | Path, sources: list[Source], defaults: Source) -> list[tuple[Source, Path | str]]:
    """(source, file or hub name) pairs in reading order. Sources lie inside the data root, which is what
    DVC tracks (`deps: ${data.path}`); a hub dataset name is the one exception."""
    root = Path(root)
    if not sources:
        if defaults.format == "hf":
            return [(defaults, root if root.exists() else str(root))]
        return [(defaults, file) for file in list_input_files(root)]
    if not root.exists():
        raise HasatError(f"{root}: data path not found (config key data.path)")
    if root.is_file():
        raise HasatError(f"{root}: data.path must be a folder when data.sources are listed")
    pairs: list[tuple[Source, Path | str]] = []
    for index, source in enumerate(sources):
        local = root / source.path
        if source.format == "hf" and not local.exists():
            pairs.append((source, source.path))
            continue
        if Path(source.path).is_absolute() or ".." in Path(source.path).parts:
            raise HasatError(f"data.sources[{index}].path '{source.path}': must be relative to data.path "
                             f"({root}) and inside it, so DVC tracks it")
        if not local.exists():
            raise HasatError(f"{local}: data source not found (config key data.sources[{index}].path)")
        if source.format == "hf":
            pairs.append((source, local))
            continue
        pairs.extend((source, file) for file in list_input_files(local))
    return pairs


# ---------------------------------------------------------------- readers: rows out of a file


def _loads(text: str | bytes, encoded: Optional[bytes] = None) -> Any:
    """Parse one JSON value; `encoded` (the same text as UTF-8, when the caller has it) saves orjson
    from converting the str again. Errors are reported on `text`, as before."""
    try:
        return orjson.loads(text if encoded is None else encoded)
    except orjson.JSONDecodeError:
        try:
            return json.loads(text)  # orjson is strict about NaN etc.; the stdlib error message is the one we show
        except RecursionError:
            raise json.JSONDecodeError("nested too deeply", text if isinstance(text, str) else "", 0) from None


def _safe_raw(text: str) -> str:
    """Raw text for the rejects file: undecodable bytes and lone surrogates written as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8") if SURROGATE_RE.search(text) else text


def _rows_jsonl(path: Path, detected: Detected) -> Iterator[Row]:
    with open_text(path, detected) as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            raw = line.rstrip("\r\n")
            source = f"{path}:{line_no}"
            encoded = _utf8_or_none(raw)
            bad = first_bad_byte(raw) if encoded is None else None  # undecodable bytes are surrogates
            if bad:
                yield source, RowError("undecodable_bytes", f"undecodable {bad} (file read as {detected.name})"), raw
                continue
            try:
                item = _loads(raw, encoded)
            except json.JSONDecodeError as err:
                yield source, RowError("invalid_json", f"invalid JSON at column {err.colno}: {err.msg}"), raw
                continue
            yield source, item, raw


def _rows_json(path: Path, detected: Detected) -> tuple[str, Iterator[Row]]:
    """A JSON array (or an object holding exactly one array). A `.json` file that is really JSON Lines
    is read as such (the format reported says so)."""
    with open_text(path, detected) as handle:
        text = handle.read()
    bad = BAD_BYTE_RE.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise HasatError(f"{path}: undecodable byte 0x{ord(bad.group()) - 0xDC00:02x} at line {line} "
                         f"(file read as {detected.name})")
    try:
        data = _loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data" and text.lstrip().startswith("{"):
            del text
            return "jsonl", _rows_jsonl(path, detected)
        raise HasatError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    del text
    if isinstance(data, dict):  # {"data": [...]} is a common wrapper
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise HasatError(f"{path}: expected a JSON array of records (or an object holding exactly one array)")
        data = lists[0]
    if not isinstance(data, list):
        raise HasatError(f"{path}: expected a JSON array of records, found {type(data).__name__}")

    def rows() -> Iterator[Row]:
        for index, item in enumerate(data, start=1):
            yield f"{path}:item {index}", item, orjson.dumps(item, option=orjson.OPT_NON_STR_KEYS).decode()

    return "json", rows()


class _LineTap:
    """Feeds lines to csv.reader and keeps those of the current record, to re-read a broken one."""

    def __init__(self, handle: Iterable[str]):
        self.lines = iter(handle)
        self.taken: list[str] = []
        self.line_no = 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        self.line_no += 1
        self.taken.append(line)
        return line


def sniff_delimiter(sample: str) -> str:
    """The candidate that splits the first lines into the same number (> 1) of columns most often."""
    best, best_score = ",", (0.0, 0)
    lines = sample.splitlines()[:50]
    if len(lines) > 1 and not sample.endswith(("\n", "\r")):
        lines = lines[:-1]  # the sample may end inside a line
    for delimiter in CSV_DELIMITERS:
        try:
            rows = [r for r in csv.reader(lines, delimiter=delimiter) if r]
        except csv.Error:
            continue
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        score = (sum(len(r) == width for r in rows) / len(rows), width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _read_header(path: Path, tap: _LineTap, reader) -> list[str]:
    try:
        header = next(reader)
    except StopIteration:
        raise HasatError(f"{path}: file is empty") from None
    except csv.Error as err:
        raise HasatError(f"{path}: unreadable CSV header ({err})") from None
    header = [name.strip().lstrip("\ufeff") for name in header]
    bad = first_bad_byte("".join(header))
    if bad:
        raise HasatError(f"{path}: undecodable {bad} in the CSV header")
    named = [name for name in header if name]
    duplicates = sorted({name for name in named if named.count(name) > 1})
    if duplicates:
        raise HasatError(f"{path}: CSV header names column(s) {', '.join(duplicates)} more than once")
    if len(header) < 2:
        raise HasatError(f"{path}: CSV header has one column ('{header[0] if header else ''}'); "
                         "is the delimiter right? (set the source's delimiter)")
    tap.taken.clear()
    return header


def _trim_trailing(cells: list[str], width: int) -> list[str]:
    """Excel writes empty cells past the last column (`a;b;c;;`)."""
    while len(cells) > width and not cells[-1].strip():
        cells = cells[:-1]
    return cells


def _csv_cells_to_row(path: Path, header: list[str], cells: list[str], row_no: int, raw: str,
                      lines: tuple[int, int]) -> Row:
    source = f"{path}:row {row_no}"
    where = f"line {lines[0]}" if lines[0] == lines[1] else f"lines {lines[0]}-{lines[1]}"
    cells = _trim_trailing(cells, len(header))
    if len(cells) != len(header):
        return source, RowError("csv_shape", f"{len(cells)} cells, header has {len(header)} ({where})"), raw
    bad = first_bad_byte(raw)
    if bad:
        return source, RowError("undecodable_bytes", f"undecodable {bad} ({where})"), raw
    if "\x00" in raw:
        return source, RowError("nul_byte", f"NUL byte in the row ({where})"), raw
    item = {name or f"column_{i + 1}": cell for i, (name, cell) in enumerate(zip(header, cells))}
    return source, item, raw


def _rows_csv(path: Path, detected: Detected, delimiter: Optional[str]) -> tuple[list[str], Iterator[Row]]:
    handle = open_text(path, detected)
    sample = handle.read(1 << 16)
    handle.seek(0)
    tap = _LineTap(handle)
    excel_hint = re.match(r"\ufeff?sep=(.)\r?\n", sample)  # Excel's "sep=;" first line
    if excel_hint:
        next(tap)
        delimiter = delimiter or excel_hint.group(1)
    elif delimiter is None:
        delimiter = sniff_delimiter(sample)
    reader = csv.reader(tap, delimiter=delimiter)
    header = _read_header(path, tap, reader)

    def rows() -> Iterator[Row]:
        row_no = 1
        with handle:
            while True:
                start = tap.line_no + 1
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except csv.Error:
                    cells = None
                lines, tap.taken = tap.taken, []
                if cells is not None and not any(cell.strip() for cell in cells):
                    continue
                raw = "".join(lines).rstrip("\r\n")
                if cells is not None and (len(_trim_trailing(cells, len(header))) == len(header) or len(lines) == 1):
                    row_no += 1
                    yield _csv_cells_to_row(path, header, cells, row_no, raw, (start, tap.line_no))
                    continue
                # A record that spans lines and does not fit the header: a stray quote swallowed the
                # lines after it. Read each physical line on its own so the good ones survive.
                for offset, line in enumerate(lines):
                    if not line.strip():
                        continue
                    try:
                        single = next(csv.reader([line.rstrip("\r\n")], delimiter=delimiter), [])
                    except csv.Error:
                        single = []
                    row_no += 1
                    line_no = start + offset
                    row = _csv_cells_to_row(path, header, single, row_no, line.rstrip("\r\n"), (line_no, line_no))
                    if isinstance(row[1], RowError) and '"' in line:
                        row = (row[0], RowError("csv_quote", f"{row[1]} — unbalanced quote?"), row[2])
                    yield row

    return header, rows()


def _json_safe(value: Any) -> Any:
    """Arrow/HF values (numpy scalars, dates, bytes) as plain JSON values."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "tolist"):
        return _json_safe(value.tolist())
    return str(value)


def _rows_parquet(path: Path) -> tuple[list[str], Iterator[Row]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types, all with a readable first line
        raise HasatError(f"{path}: not a readable Parquet file ({str(err).splitlines()[0]})") from None
    if parquet.metadata.num_rows == 0:
        raise HasatError(f"{path}: file is empty (Parquet file with no rows)")
    columns = list(parquet.schema_arrow.names)

    def rows() -> Iterator[Row]:
        row_no = 0
        for batch in parquet.iter_batches(batch_size=4096):
            for item in batch.to_pylist():
                row_no += 1
                item = _json_safe(item)
                yield f"{path}:row {row_no}", item, orjson.dumps(item).decode()

    return columns, rows()


def _load_hf(spec: Source, target: Path | str):
    """A `save_to_disk` folder through `load_from_disk`, anything else through `load_dataset`
    (a folder of data files, or a hub name: needs the hub, or its cache)."""
    import datasets

    datasets.disable_progress_bars()
    local = Path(target)
    try:
        if isinstance(target, Path) and _is_hf_folder(local):
            loaded = datasets.load_from_disk(str(local))
        else:
            loaded = datasets.load_dataset(str(target), spec.config, split=spec.split)
    except Exception as err:
        raise HasatError(f"{target}: could not load the Hugging Face dataset "
                         f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    if isinstance(loaded, datasets.DatasetDict):
        if spec.split not in loaded:
            raise HasatError(f"{target}: no split '{spec.split}' (has: {', '.join(loaded)}); set the source's split")
        loaded = loaded[spec.split]
    return loaded


def _rows_hf(spec: Source, target: Path | str) -> tuple[list[str], Iterator[Row]]:
    dataset = _load_hf(spec, target)
    if len(dataset) == 0:
        raise HasatError(f"{target}: file is empty (dataset split '{spec.split}' has no rows)")
    class_names = {name: feature.names for name, feature in dataset.features.items()
                   if type(feature).__name__ == "ClassLabel"}

    def rows() -> Iterator[Row]:
        for row_no, item in enumerate(dataset, start=1):
            item = _json_safe(item)
            for name, names in class_names.items():  # ClassLabel ids -> their names
                if isinstance(item.get(name), int) and 0 <= item[name] < len(names):
                    item[name] = names[item[name]]
            yield f"{target}:row {row_no}", item, orjson.dumps(item).decode()

    return list(dataset.column_names), rows()


# ---------------------------------------------------------------- schema: rows to records


def _rename(item: Any, mapping: dict) -> Any:
    if not mapping or not isinstance(item, dict):
        return item
    renamed = {key: value for key, value in item.items() if key not in mapping}
    for user, canonical in mapping.items():
        if user in item:
            renamed[canonical] = item[user]
    return renamed


def schema_of_columns(columns: Iterable[str]) -> Optional[str]:
    names = set(columns)
    for schema in ("chat", "sharegpt", "alpaca", "classification"):
        if set(SCHEMA_FIELDS[schema][0]) <= names:
            return schema
    return None


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
    label = item.get("label")
    if label is None:
        raise RowError("missing_field", "missing field 'label'")
    if isinstance(label, bool) or not isinstance(label, (str, int)):
        raise RowError("wrong_type", f"field 'label' is {type(label).__name__}, expected text or an integer")
    return {"text": _expect_text(item, "text"), "label": str(label)}


def record_id(fields: dict) -> str:
    return hashlib.sha1(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]


def to_record(item: Any, source: str, schema: str = "alpaca") -> dict:
    """Validate one parsed row as a record of `schema`; raise RowError with the reject reason."""
    if isinstance(item, Exception):
        raise item
    if not isinstance(item, dict):
        raise RowError("not_an_object", f"expected an object with fields "
                                        f"{', '.join(SCHEMA_FIELDS[schema][0])}, found {type(item).__name__}")
    fields = _fields(item, schema)
    used = set(SCHEMA_FIELDS[schema][0]) | set(SCHEMA_FIELDS[schema][1])
    meta = {key: value for key, value in item.items() if key not in used}
    return {"id": record_id(fields), "source": source, **fields, "meta": meta}


# ---------------------------------------------------------------- one file, all sources


def _peek_schema(rows: Iterator[Row], name: str) -> tuple[str, Iterator[Row]]:
    """Detect the schema from the first rows that are objects; hand all rows back."""
    head = list(islice(rows, SCHEMA_PEEK_ROWS))
    seen: set[str] = set()
    for _, item, _ in head:
        if isinstance(item, dict):
            seen.update(item)
            schema = schema_of_columns(item)
            if schema:
                return schema, chain(head, rows)
    if not head:
        raise HasatError(f"{name}: file is empty (no data rows)")
    found = ", ".join(sorted(seen)[:12]) or "no JSON objects"
    raise HasatError(f"{name}: cannot tell the schema: rows have no instruction+output, messages, conversations or "
                     f"text+label (found: {found}); set the source's schema or map columns")


def _check_columns(name: str, columns: list[str], mapping: dict, schema: str) -> None:
    missing = [user for user in mapping if user not in columns]
    if missing:
        raise HasatError(f"{name}: mapped column(s) {', '.join(repr(m) for m in missing)} not found "
                         f"(columns: {', '.join(columns)})")
    renamed = [mapping.get(c, c) for c in columns]
    lacking = [f for f in SCHEMA_FIELDS[schema][0] if f not in renamed]
    if lacking:
        raise HasatError(f"{name}: header lacks column(s) {', '.join(lacking)} for schema {schema} "
                         f"(found: {', '.join(columns)}); map yours with the source's columns")


def _open_rows(spec: Source, target: Path | str, fmt: str, stats: FileStats) -> tuple[Optional[list[str]], Iterator[Row]]:
    if fmt == "hf":
        stats.encoding = "arrow"
        return _rows_hf(spec, target)
    path = Path(target)
    if not path.is_file():
        raise HasatError(f"{path}: not a file (format {fmt})")
    if fmt == "parquet":
        if path.stat().st_size == 0:
            raise HasatError(f"{path}: file is empty")
        stats.encoding = "parquet"
        return _rows_parquet(path)
    detected = detect_encoding(path, spec.encoding)
    stats.encoding = detected.name
    if fmt == "jsonl":
        return None, _rows_jsonl(path, detected)
    if fmt == "json":
        stats.format, rows = _rows_json(path, detected)
        return None, rows
    return _rows_csv(path, detected, "\t" if fmt == "tsv" else spec.delimiter)


@dataclass
class Sampler:
    """Seeded per source: weight w keeps each row floor(w) times, plus once more with chance frac(w)."""

    weight: float
    rng: random.Random

    def copies(self) -> int:
        whole = int(self.weight)
        return whole + (1 if self.rng.random() < self.weight - whole else 0)


def _utf8_or_none(text: str) -> Optional[bytes]:
    """`text` as UTF-8, or None when it holds a surrogate (the only code points strict UTF-8 refuses):
    one C pass, several times faster than searching for them with a regex."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return None


def _may_hold_surrogates(raw: str) -> bool:
    return "\\u" in raw or _utf8_or_none(raw) is None


def ingest_file(spec: Source, target: Path | str, sampler: Optional[Sampler], emit: Callable[[dict], None],
                reject: Callable[[dict], None], max_reject_share: float = 1.0) -> FileStats:
    """Stream one file's rows to `emit` (records) and `reject` (rejects); return its counts."""
    name = str(target)
    fmt = detect_format(Path(target), spec.format) if isinstance(target, Path) else spec.format
    stats = FileStats(format=fmt, weight=sampler.weight if sampler else 1.0)
    columns, rows = _open_rows(spec, target, fmt, stats)
    mapping = dict(spec.columns or {})
    seen_mapped: set[str] = set()

    def renamed(rows: Iterator[Row]) -> Iterator[Row]:
        for source, item, raw in rows:
            if isinstance(item, dict):
                seen_mapped.update(user for user in mapping if user in item)
                item = _rename(item, mapping)
            yield source, item, raw

    rows = renamed(rows) if mapping else rows
    schema = spec.schema
    if columns is not None:
        schema = schema if schema != "auto" else schema_of_columns(mapping.get(c, c) for c in columns) or "alpaca"
        _check_columns(name, columns, mapping, schema)
    elif schema == "auto":
        try:
            schema, rows = _peek_schema(rows, name)
        except HasatError:
            _check_mapped_seen(name, mapping, seen_mapped)
            raise
    stats.schema = schema
    for source, item, raw in rows:
        stats.read += 1
        try:
            record = to_record(item, source, schema)
            if _may_hold_surrogates(raw):
                orjson.dumps(record)
        except RowError as err:
            _reject(stats, reject, source, err.code, str(err), raw)
            continue
        except (orjson.JSONEncodeError, TypeError):
            bad = first_bad_byte(raw)
            _reject(stats, reject, source, "undecodable_bytes",
                    f"undecodable {bad}" if bad else "text holds a lone surrogate (a broken \\u escape)", raw)
            continue
        copies = sampler.copies() if sampler else 1
        if copies == 0:
            stats.sampled_out += 1
            _reject(stats, reject, source, "sampled_out", f"sampled out (source weight {sampler.weight})", raw)
            continue
        stats.kept += 1
        emit(record)
        for copy in range(1, copies):
            stats.copies_added += 1
            emit({**record, "id": f"{record['id']}-{copy}", "meta": {**record["meta"], "sample_copy": copy}})
    if stats.read == 0:
        raise HasatError(f"{name}: file is empty (no data rows)")
    if columns is None and stats.read > stats.invalid:
        _check_mapped_seen(name, mapping, seen_mapped)
    _check_rejects(name, stats, max_reject_share)
    return stats


def _check_mapped_seen(name: str, mapping: dict, seen: set) -> None:
    never = [user for user in mapping if user not in seen]
    if never:
        raise HasatError(f"{name}: mapped column(s) {', '.join(repr(m) for m in never)} found in no row")


def _reject(stats: FileStats, reject: Callable[[dict], None], source: str, code: str, reason: str, raw: str) -> None:
    stats.rejected += 1
    stats.reasons[code] += 1
    stats.first_reject.setdefault(code, f"{reason} at {source}")
    reject({"source": source, "reason": reason, "raw": _safe_raw(raw)})


def _check_rejects(name: str, stats: FileStats, max_reject_share: float) -> None:
    if stats.kept == 0 and stats.sampled_out == 0:
        code, _ = stats.reasons.most_common(1)[0]
        raise HasatError(f"{name}: no usable rows ({stats.rejected} rejected; first: {stats.first_reject[code]})")
    share = stats.invalid / stats.read
    if share > max_reject_share:
        code, count = (stats.reasons - Counter({"sampled_out": stats.sampled_out})).most_common(1)[0]
        raise HasatError(f"{name}: {stats.invalid} of {stats.read} rows rejected ({share:.0%} > max_reject_share "
                         f"{max_reject_share:.0%}); most often {code} ({count}), first: {stats.first_reject[code]}")


def ingest_stream(root: str | Path, sources: list[Source], defaults: Source, emit: Callable[[dict], None],
                  reject: Callable[[dict], None], seed: int = 42, max_reject_share: float = 1.0) -> IngestStats:
    """Read every source under `root` in order; rows go to `emit` / `reject` as they are read."""
    stats = IngestStats()
    for spec, target in resolve_sources(root, sources, defaults):
        sampler = None
        if spec.weight is not None and spec.weight != 1.0:
            if spec.weight <= 0:
                raise HasatError(f"source {spec.path}: weight {spec.weight} must be positive")
            sampler = Sampler(spec.weight, random.Random(f"{seed}:{spec.path}:{target}"))
        stats.files[str(target)] = ingest_file(spec, target, sampler, emit, reject, max_reject_share)
    return stats


def ingest(path: str | Path, configured_format: str = "auto", schema: str = "auto", columns: Optional[dict] = None,
           encoding: str = "auto", sources: Optional[list[Source]] = None, seed: int = 42,
           max_reject_share: float = 1.0) -> IngestResult:
    """In memory, for small data and tests: the stage streams through `ingest_stream` instead."""
    result = IngestResult()
    defaults = Source(path=str(path), format=configured_format, schema=schema, encoding=encoding,
                      columns=dict(columns or {}))
    result.stats = ingest_stream(path, list(sources or []), defaults, result.records.append, result.rejects.append,
                                 seed, max_reject_share)
    return result
