"""Which files to read: the data files under a path, their format, and the configured sources in reading order."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

from pipeline.config import DataFormat, SourceConfig
from pipeline.errors import HasatError

FORMATS_BY_SUFFIX = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
                     ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet"}
FORMATS = get_args(DataFormat)
HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and any((path / marker).is_file() for marker in HF_MARKERS)


def list_input_files(path: str | Path) -> list[Path]:
    """The data files under `path` (a file or a folder), sorted; dotfiles ignored. A folder written
    by `datasets.save_to_disk` counts as one item."""
    path = Path(path)
    if not path.exists():
        raise HasatError(f"{path}: data path not found (config key data.path)")
    if path.is_file() or is_hf_folder(path):
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
    if is_hf_folder(path):
        return "hf"
    fmt = FORMATS_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMATS_BY_SUFFIX))
        raise HasatError(f"{path}: unknown data format '{path.suffix or '(no extension)'}' (expected one of {known}, "
                         "or set the source's format)")
    return fmt


def resolve_sources(root: str | Path, sources: list[SourceConfig],
                    defaults: SourceConfig) -> list[tuple[SourceConfig, Path | str]]:
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
        pairs.extend((source, file) for file in list_input_files(local))
    return pairs
