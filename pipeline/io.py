"""File helpers every stage uses: atomic writes (temp file + rename), JSONL, stats JSON."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from pipeline.errors import HasatError


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `target`; move it over `target` only if the block succeeds.

    Works for files and folders, so DVC never caches a half-written output.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*"):  # left by a killed run: never half-reused
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent)) / target.name
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def write_json(path: str | Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise HasatError(f"{path}: file not found (has the stage that writes it run?)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise HasatError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    count = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSONL file written by an earlier stage (trusted format: errors are fatal)."""
    path = Path(path)
    if not path.is_file():
        raise HasatError(f"{path}: file not found (has the stage that writes it run?)")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if line.strip():
                rows.append(parse_json_line(line, f"{path}:{line_no}", strict=False))
    return rows


def parse_json_line(line: str | bytes, where: str, strict: bool = True) -> Any:
    """One line of a JSONL file an earlier stage wrote; a broken line stops the stage, naming `where`
    (`file:line`). strict: orjson (fast; refuses NaN and lone surrogates), its full error text; else the
    stdlib parser, which takes them (read_jsonl also reads hand-made files), and its short message."""
    import orjson

    try:
        return orjson.loads(line) if strict else json.loads(line)
    except json.JSONDecodeError as err:  # orjson's error is a subclass
        raise HasatError(f"{where}: not valid JSON ({err if strict else err.msg})") from None


@contextlib.contextmanager
def staged_outputs(*targets: str | Path) -> Iterator[list[Path]]:
    """Temp paths for several outputs, moved over `targets` together only if the block succeeds.

    The temp files live under `.hasat/` (git-ignored), not beside the targets, so a stage that fails
    half-way leaves no output folder behind either.
    """
    base = Path(".hasat")
    base.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=base))
    try:
        paths = [staging / f"{i}-{Path(target).name}" for i, target in enumerate(targets)]
        yield paths
        for tmp, target in zip(paths, targets):
            target = Path(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not tmp.exists():
                raise HasatError(f"{target}: the stage wrote no output")  # a bug, said plainly
            shutil.move(str(tmp), str(target))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            base.rmdir()  # only if empty


def iter_jsonl_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) of a JSONL file an earlier stage wrote, blank lines skipped; streams."""
    path = Path(path)
    if not path.is_file():
        raise HasatError(f"{path}: file not found (has the stage that writes it run?)")
    with path.open("rb") as handle:
        for line_no, line in enumerate(handle, start=1):
            if line.strip():
                yield line_no, line


class JsonlWriter:
    """Append records to a JSONL file (orjson: ~5x faster than json on large outputs)."""

    def __init__(self, path: str | Path):
        import orjson

        self._dumps = orjson.dumps
        self._handle = open(path, "wb")
        self.count = 0

    def write(self, row: dict) -> None:
        self._handle.write(self._dumps(row))
        self._handle.write(b"\n")
        self.count += 1

    def write_line(self, line: bytes) -> None:
        """A row already serialised as one JSON line (no newline)."""
        self._handle.write(line)
        self._handle.write(b"\n")
        self.count += 1

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
