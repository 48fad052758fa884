"""The data report on the real outputs of a tiny pipeline (ingest, clean, tokenize, split on a noisy
file with the tiny model's tokenizer): its sections and numbers agree with the stages' stats, its
token-length CSV accounts for every row, it is self-contained; and it still renders when inputs or
keys are missing."""

import csv
import json
import re
import shutil
import xml.etree.ElementTree as ET

import pytest

from pipeline.data.report import collect, histogram, nice_bin_width, reason_group, source_file
from pipeline.data.report_html import render
from tests.conftest import REPO, copy_config, run_stage_cli

ENGLISH = {"instruction": "When is wheat sown in central Anatolia, and how deep should it go?",
           "output": "Usually in October after the first autumn rains, a few centimetres deep."}
DUPLICATE = {"instruction": "Buğday ne zaman ekilir ve toprak nasıl hazırlanır?",
             "output": "Ekim ayında, iyi hazırlanmış ve bastırılmış tohum yatağına ekilir."}
# max_seq_len 200 drops half the rows on purpose (the report shows lengths before and after the filter)
ARGS = ["model=tiny_random", "tokenize.max_seq_len=200", "tokenize.max_drop_share=1.0", "split.val_size=4",
        "split.test_size=4"]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, tiny_model_dir):
    work = copy_config(tmp_path_factory.mktemp("data_report"))
    raw = work / "raw"
    raw.mkdir()
    shutil.copy(REPO / "data/raw/tarim_sft/talimatlar.jsonl", raw / "a.jsonl")
    lines = [json.dumps(ENGLISH, ensure_ascii=False)] * 1 + [json.dumps(DUPLICATE, ensure_ascii=False)] * 3
    lines.append('{"instruction": "<script>alert(1)</script>"')  # broken JSON: an ingest reject, shown escaped
    (raw / "b.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.copytree(tiny_model_dir, work / "models" / "base")
    for stage in ("ingest", "clean", "tokenize", "split", "data_report"):
        result = run_stage_cli(f"pipeline.stages.{stage}", *ARGS, f"data.path={raw}", cwd=work)
        assert result.returncode == 0, result.stderr
    return work


def stats(work, stage):
    return json.loads((work / "metrics" / f"{stage}.json").read_text(encoding="utf-8"))


def test_the_report_shows_every_section_with_the_stages_numbers(report_dir):
    html = (report_dir / "reports/data/report.html").read_text(encoding="utf-8")
    for section in ("Rows per stage", "Rows per source", "Rejects by reason", "Token lengths before and after",
                    "Languages and duplicates", "Tokenizer fertility"):
        assert f"<h2>{section}" in html, section
    ingest, clean, tok = stats(report_dir, "ingest"), stats(report_dir, "clean"), stats(report_dir, "tokenize")
    assert f"{ingest['rows_read']:,} rows read → {tok['rows_out']:,} training examples" in html
    assert tok["dropped_too_long"] > 0 and clean["rejected_by_reason"]["exact_duplicate"] == 2
    assert f"tokenize: {tok['dropped_too_long']:,} rows rejected" in html
    assert f"too long: N tokens &gt; max_seq_len N — {tok['dropped_too_long']:,} rows (3 shown)" in html
    assert "exact duplicate — 2 rows (2 shown)" in html and "language en — 1 rows" in html
    assert re.search(r"<td>exact duplicates removed</td><td>2</td>", html)
    assert re.search(r"<td>rejected as en</td><td>1</td>", html)
    by_source = clean["by_source"]
    b = next(name for name in by_source if name.endswith("b.jsonl"))
    assert re.search(rf"<td>{re.escape(b)}</td><td>{ingest['by_source'][b]['read']}</td><td>1</td>", html)
    assert f"{tok['fertility_tokens_per_word']:.3g} tokens per word" in html
    assert "&lt;script&gt;" in html and "<script>" not in html  # data is escaped


def test_the_report_is_self_contained_and_its_charts_are_valid_svg(report_dir):
    html = (report_dir / "reports/data/report.html").read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=\"?(https?:)?//", html)  # no CDN, no remote image
    svgs = re.findall(r"<svg.*?</svg>", html, re.S)
    assert len(svgs) >= 4
    for svg in svgs:
        ET.fromstring(svg)  # well-formed


def test_the_length_csv_accounts_for_every_row_that_reached_tokenize(report_dir):
    with (report_dir / "reports/data/token_lengths.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    tok = stats(report_dir, "tokenize")
    assert sum(int(r["all_rows"]) for r in rows) == tok["rows_in"]
    assert sum(int(r["kept_rows"]) for r in rows) == tok["rows_out"]
    width = int(rows[1]["tokens"])
    too_long = sum(int(r["all_rows"]) - int(r["kept_rows"]) for r in rows)
    assert too_long == tok["dropped_too_long"]
    assert all(int(r["kept_rows"]) == 0 for r in rows if int(r["tokens"]) > 200)  # nothing kept over max_seq_len
    assert all(int(r["all_rows"]) == int(r["kept_rows"]) for r in rows if int(r["tokens"]) + width <= 200)


def test_the_report_renders_when_inputs_are_missing(tmp_path):
    tokenized = tmp_path / "tokenized.jsonl"
    tokenized.write_text(json.dumps({"source": "x.csv:row 3", "text": "iki kelime", "label": "spor",
                                     "input_ids": [1, 2, 3, 4]}) + "\n", encoding="utf-8")
    (tmp_path / "tokenize.json").write_text('{"rows_out": 1}', encoding="utf-8")
    report = collect({"ingest": tmp_path / "none.json", "tokenize": tmp_path / "tokenize.json"},
                     {"clean": tmp_path / "none.jsonl"}, tokenized)
    html = render(report, *histogram({"all rows": report.lengths_all, "kept rows": report.lengths_kept}))
    assert "<h2>Rows per source" in html and "<td>x.csv</td>" in html and "<td>2</td>" in html  # 4 tokens / 2 words
    assert "clean: 0 rows rejected" in html and "tokenize: out" in html


def test_helpers():
    assert source_file("data/a.jsonl:12") == "data/a.jsonl" and source_file("b.csv:row 4") == "b.csv"
    assert reason_group("near duplicate of a.jsonl:3 (estimated Jaccard 0.91)") == "near duplicate"
    assert reason_group("language en: p(tr) = 0.01 < min_confidence 0.5") == "language en"
    assert reason_group("too long: 412 tokens > max_seq_len 384") == "too long: N tokens > max_seq_len N"
    assert [nice_bin_width(n) for n in (30, 41, 100, 399, 4000, 40_000)] == [1, 2, 5, 10, 100, 1000]
    width, rows = histogram({"a": [0, 5, 99], "b": [5]})
    assert width == 5 and len(rows) == 20 and rows[1] == {"tokens": 5, "a": 1, "b": 1} and rows[19]["a"] == 1
