"""Read training data of any common shape into canonical records (see pipeline/data/records.py).

    sources.py  which files: data files under a path (each real file once), their format, the sources
    readers.py  rows out of JSONL, JSON arrays, CSV/TSV (delimiter sniffed), Parquet, HF datasets
    rows.py     the Row a reader yields, and RowError (a row's reject reason)
    schemas.py  rows to records: Alpaca, chat, ShareGPT, classification; schema detection, column mapping
    stream.py   one file and all sources to records and rejects, sampling weights, per-file stats

Text files are decoded with the detected encoding (pipeline/data/encoding.py) and read as a stream.
Every row read ends in exactly one place: a record, or a reject {"source", "reason", "raw"}.
A file that cannot be used at all raises HasatError naming it (and the line/column where it applies).
"""

from pipeline.data.ingest.readers import sniff_delimiter
from pipeline.data.ingest.rows import Row, RowError
from pipeline.data.ingest.schemas import SCHEMA_FIELDS, SCHEMAS, record_id, schema_of_columns, to_record
from pipeline.data.ingest.sources import FORMATS, LinkReport, detect_format, list_input_files, resolve_sources
from pipeline.data.ingest.stream import (FileStats, IngestResult, IngestStats, Sampler, ingest, ingest_file,
                                         ingest_stream)

__all__ = ["FORMATS", "SCHEMAS", "SCHEMA_FIELDS", "FileStats", "IngestResult", "IngestStats", "LinkReport", "Row",
           "RowError",
           "Sampler", "detect_format", "ingest", "ingest_file", "ingest_stream", "list_input_files", "record_id",
           "resolve_sources", "schema_of_columns", "sniff_delimiter", "to_record"]
