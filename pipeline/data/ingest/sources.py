"""Which files to read: the data files under a path, their format, and the configured sources in reading order."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, get_args

from pipeline.config import DataFormat, SourceConfig
from pipeline.errors import HasatError

FORMATS_BY_SUFFIX = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
                     ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet"}
FORMATS = get_args(DataFormat)
HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
log = logging.getLogger("hasat")


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and any((path / marker).is_file() for marker in HF_MARKERS)


@dataclass
class LinkReport:
    """Symbolic links met while listing data files: each real file is read once, under its first path
    (one that is not a link if there is one); loops, dangling links and second paths to a file already
    listed are skipped, each logged in one line and counted (metrics/ingest.json `links`)."""

    loops: list[str] = field(default_factory=list)
    dangling: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)

    def note(self, kind: str, line: str) -> None:
        getattr(self, kind).append(line)
        log.warning("ingest: %s", line)

    def counts(self) -> dict:
        return {"loops": len(self.loops), "dangling": len(self.dangling), "duplicates": len(self.duplicates)}


def list_input_files(path: str | Path, links: Optional[LinkReport] = None) -> list[Path]:
    """The data files under `path` (a file or a folder), sorted; dotfiles ignored. A folder written
    by `datasets.save_to_disk` counts as one item. Symbolic links are followed, each real file once."""
    path = Path(path)
    links = links if links is not None else LinkReport()
    if not path.exists():
        if path.is_symlink():
            raise HasatError(f"{path}: data path is a dangling symbolic link (to {os.readlink(path)})")
        raise HasatError(f"{path}: data path not found (config key data.path)")
    if path.is_file() or is_hf_folder(path):
        return [path]
    found: dict[Path, Path] = {}  # real file -> the path it is read under
    _walk(path, (path.resolve(),), found, {path.resolve()}, links)
    if not found:
        raise HasatError(f"{path}: folder holds no data files (config key data.path)")
    return sorted(found.values())


def _walk(folder: Path, ancestors: tuple[Path, ...], found: dict[Path, Path], folders: set[Path],
          links: LinkReport) -> None:
    """Files under `folder` into `found`; `ancestors` are the real folders above it (a link to one is a
    loop), `folders` every real folder read so far."""
    entries = sorted(child for child in folder.iterdir() if not child.name.startswith("."))
    # plain entries first: a file reached both directly and through a link is read under its own name
    for child in sorted(entries, key=lambda c: c.is_symlink()):
        if child.is_symlink() and not child.exists():
            links.note("dangling", f"{child}: dangling symbolic link (to {os.readlink(child)}), skipped")
            continue
        real = child.resolve()
        if child.is_dir() and not is_hf_folder(child):
            if real in ancestors:
                links.note("loops", f"{child}: symbolic link loop (to {real}, a folder above it), skipped")
            elif real in folders:
                links.note("duplicates", f"{child}: folder {real} already read, skipped")
            else:
                folders.add(real)
                _walk(child, ancestors + (real,), found, folders, links)
        elif real in found:
            links.note("duplicates", f"{child}: same file as {found[real]}, read once")
        elif child.is_file() or is_hf_folder(child):
            found[real] = child


def detect_format(path: Path, configured: str) -> str:
    if configured != "auto":
        return configured
    if is_hf_folder(path):
        return "hf"
    fmt = FORMATS_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMATS_BY_SUFFIX))
        raise HasatError(f"{path}: unknown data format '{path.suffix or '(no extension)'}' (expected one of {known}, "
                         "or set the source's format)")
    return fmt


def resolve_sources(root: str | Path, sources: list[SourceConfig], defaults: SourceConfig,
                    links: Optional[LinkReport] = None) -> list[tuple[SourceConfig, Path | str]]:
    """(source, file or hub name) pairs in reading order. Sources lie inside the data root, which is what
    DVC tracks (`deps: ${data.path}`); a hub dataset name is the one exception."""
    root = Path(root)
    if not sources:
        if defaults.format == "hf":
            return [(defaults, root if root.exists() else str(root))]
        return [(defaults, file) for file in list_input_files(root, links)]
    if not root.exists():
        raise HasatError(f"{root}: data path not found (config key data.path)")
    if root.is_file():
        raise HasatError(f"{root}: data.path must be a folder when data.sources are listed")
    pairs: list[tuple[SourceConfig, Path | str]] = []
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
        pairs.extend((source, file) for file in list_input_files(local, links))
    return pairs
