"""Clean canonical records for Turkish training data; every step has a switch and its own counters.

    text.py     text fixes: mojibake, HTML, Unicode form, control characters, whitespace
    rows.py     RowCleaner: the fixes, KVKK masking and the filters that look at one row (worker-safe)
    minhash.py  exact keys, MinHash signatures and the LSH index for near-duplicates
    dedup.py    Deduplicator: the in-order decisions (exact / near-duplicate of a row kept earlier)
    balance.py  class balance (under/oversampling) and balanced class weights
    stats.py    CleanStats, the stats JSON, the reject-share stop
    workers.py  batches through RowCleaner, in worker processes for large inputs
    stream.py   the whole run: clean_records (in memory), clean_file (streaming, the stage)

Transforms (on every free-text field, in this order): mojibake repair, HTML tags and entities,
Unicode normal form, control and zero-width characters, whitespace, personal data masking (KVKK).
Filters (a row fails at the first): empty text or label, length in characters, length in tokens of
the base tokenizer, language, exact duplicate, near-duplicate. Labelled data can then be balanced.
Every dropped row becomes a reject {"source", "reason", "raw"}; `CleanStats` holds
`rows_in == kept + rejected`.
"""

from pipeline.data.clean.balance import apply_balance, balance_plan, class_weights
from pipeline.data.clean.dedup import Deduplicator
from pipeline.data.clean.minhash import MinHasher, NearDuplicateIndex, exact_key, lsh_bands
from pipeline.data.clean.rows import BatchResult, RowCleaner, joined_text, match_text, record_texts
from pipeline.data.clean.stats import FILTERS, TRANSFORMS, CleanStats, check_reject_share, stats_dict
from pipeline.data.clean.stream import CleanResult, clean_batches, clean_file, clean_records
from pipeline.data.clean.text import (fix_mojibake, normalise_unicode, normalise_whitespace, remove_control_chars,
                                      strip_html)
from pipeline.data.clean.workers import cleaned_batches, resolve_workers

__all__ = ["FILTERS", "TRANSFORMS", "BatchResult", "CleanResult", "CleanStats", "Deduplicator", "MinHasher",
           "NearDuplicateIndex", "RowCleaner", "apply_balance", "balance_plan",
           "check_reject_share", "class_weights", "clean_batches", "clean_file", "clean_records", "cleaned_batches",
           "exact_key", "fix_mojibake", "joined_text", "lsh_bands", "match_text", "normalise_unicode",
           "normalise_whitespace", "record_texts", "remove_control_chars", "resolve_workers", "stats_dict",
           "strip_html"]
