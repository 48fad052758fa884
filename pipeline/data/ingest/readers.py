"""Rows out of one file: JSONL, JSON array, CSV/TSV, Parquet and Hugging Face datasets.

Each reader yields a `Row` per data row, `source` named `file:line` (JSONL), `file:item N` (JSON array)
or `file:row N` (CSV, Parquet, HF). A row that cannot be parsed carries a RowError; a file that cannot
be used at all raises HasatError naming it.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Optional

import orjson

from pipeline.config import SourceConfig
from pipeline.data.encoding import BAD_BYTE_RE, Detected, detect_encoding, first_bad_byte, open_text
from pipeline.data.ingest.rows import Row, RowError, utf8_or_none
from pipeline.data.ingest.sources import is_hf_folder
from pipeline.errors import HasatError

CSV_DELIMITERS = (",", ";", "\t", "|")
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long answers are fine; the length filter judges them


class OpenedFile(NamedTuple):
    columns: Optional[list[str]]  # header (CSV, Parquet, HF); None where each row has its own keys
    rows: Iterator[Row]
    encoding: str
    format: str  # a `.json` file that is really JSON Lines reports jsonl


def open_rows(spec: SourceConfig, target: Path | str, fmt: str) -> OpenedFile:
    if fmt == "hf":
        return OpenedFile(*rows_hf(spec, target), "arrow", fmt)
    path = Path(target)
    if not path.is_file():
        raise HasatError(f"{path}: not a file (format {fmt})")
    if fmt == "parquet":
        if path.stat().st_size == 0:
            raise HasatError(f"{path}: file is empty")
        return OpenedFile(*rows_parquet(path), "parquet", fmt)
    detected = detect_encoding(path, spec.encoding)
    if fmt == "jsonl":
        return OpenedFile(None, rows_jsonl(path, detected), detected.name, fmt)
    if fmt == "json":
        read_as, rows = rows_json(path, detected)
        return OpenedFile(None, rows, detected.name, read_as)
    return OpenedFile(*rows_csv(path, detected, "\t" if fmt == "tsv" else spec.delimiter), detected.name, fmt)


# ---------------------------------------------------------------- JSON Lines and JSON arrays


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


def rows_jsonl(path: Path, detected: Detected) -> Iterator[Row]:
    with open_text(path, detected) as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            raw = line.rstrip("\r\n")
            source = f"{path}:{line_no}"
            encoded = utf8_or_none(raw)
            bad = first_bad_byte(raw) if encoded is None else None  # undecodable bytes are surrogates
            if bad:
                yield Row(source, raw=raw, error=RowError("undecodable_bytes",
                                                          f"undecodable {bad} (file read as {detected.name})"))
                continue
            try:
                item = _loads(raw, encoded)
            except json.JSONDecodeError as err:
                reason = f"invalid JSON at column {err.colno}: {err.msg}"
                yield Row(source, raw=raw, error=RowError("invalid_json", reason))
                continue
            yield Row(source, item, raw)


def rows_json(path: Path, detected: Detected) -> tuple[str, Iterator[Row]]:
    """A JSON array (or an object holding exactly one array). A `.json` file that is really JSON Lines
    is read as such (the format returned says so)."""
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
            return "jsonl", rows_jsonl(path, detected)
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
            yield Row(f"{path}:item {index}", item, orjson.dumps(item, option=orjson.OPT_NON_STR_KEYS).decode())

    return "json", rows()


# ---------------------------------------------------------------- CSV / TSV


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
        reason = f"{len(cells)} cells, header has {len(header)} ({where})"
        return Row(source, raw=raw, error=RowError("csv_shape", reason))
    bad = first_bad_byte(raw)
    if bad:
        return Row(source, raw=raw, error=RowError("undecodable_bytes", f"undecodable {bad} ({where})"))
    if "\x00" in raw:
        return Row(source, raw=raw, error=RowError("nul_byte", f"NUL byte in the row ({where})"))
    item = {name or f"column_{i + 1}": cell for i, (name, cell) in enumerate(zip(header, cells))}
    return Row(source, item, raw)


def _line_by_line(path: Path, header: list[str], lines: list[str], start: int, row_no: int,
                  delimiter: str) -> Iterator[Row]:
    """A record that spans lines and does not fit the header: a stray quote swallowed the lines after
    it. Each physical line is read on its own so the good ones survive."""
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
        if row.error and '"' in line:
            row.error = RowError("csv_quote", f"{row.error} — unbalanced quote?")
        yield row


def rows_csv(path: Path, detected: Detected, delimiter: Optional[str]) -> tuple[list[str], Iterator[Row]]:
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
                yield from _line_by_line(path, header, lines, start, row_no, delimiter)
                row_no += sum(1 for line in lines if line.strip())

    return header, rows()


# ---------------------------------------------------------------- Parquet and Hugging Face datasets


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


def rows_parquet(path: Path) -> tuple[list[str], Iterator[Row]]:
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
                yield Row(f"{path}:row {row_no}", item, orjson.dumps(item).decode())

    return columns, rows()


def _load_hf(spec: SourceConfig, target: Path | str):
    """A `save_to_disk` folder through `load_from_disk`, anything else through `load_dataset`
    (a folder of data files, or a hub name: needs the hub, or its cache)."""
    import datasets

    datasets.disable_progress_bars()
    local = Path(target)
    try:
        if isinstance(target, Path) and is_hf_folder(local):
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


def rows_hf(spec: SourceConfig, target: Path | str) -> tuple[list[str], Iterator[Row]]:
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
            yield Row(f"{target}:row {row_no}", item, orjson.dumps(item).decode())

    return list(dataset.column_names), rows()
