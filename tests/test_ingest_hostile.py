"""Hostile inputs to ingest and clean, as real files: huge rows, symlinks, mixed chat schemas."""

import json
import os

import orjson

from pipeline.config import CleanConfig, LanguageConfig, LengthConfig, NearDuplicatesConfig, SourceConfig
from pipeline.data.clean import clean_file
from pipeline.data.ingest import ingest, ingest_stream
from pipeline.data.rejects import RAW_MAX_CHARS, read_rejects, rejects_header
from pipeline.io import JsonlWriter
from pipeline.stages.ingest import stats_dict

ALPACA = {"instruction": "Buğday ne zaman ekilir?", "input": "", "output": "Orta Anadolu'da ekimde ekilir."}


def lines(*rows) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def test_a_huge_row_leaves_a_bounded_prefix_and_its_length_in_the_rejects(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    huge_answer = "Buğday tarlası " * 150_000  # 2.4 MB of text: valid, then too long for clean
    broken = '{"instruction": "kırık", "output": "' + "ç" * 1_500_000  # 3 MB (1.5M characters), never closed
    (data / "rows.jsonl").write_text(lines(ALPACA) + broken + "\n" + lines({**ALPACA, "output": huge_answer}),
                                     encoding="utf-8")
    ingested, ingest_rejects = tmp_path / "ingested.jsonl", tmp_path / "ingest_rejects.jsonl"
    with JsonlWriter(ingested) as out, JsonlWriter(ingest_rejects) as rejects:
        ingest_stream(data, [], SourceConfig(path=str(data)), out.write, rejects.write)
    [reject] = [orjson.loads(line) for line in ingest_rejects.read_bytes().splitlines()]  # the library writes no header
    assert reject["source"].endswith("rows.jsonl:2") and reject["raw_chars"] == len(broken)
    assert reject["raw"] == broken[:RAW_MAX_CHARS] and ingest_rejects.stat().st_size < 4 * RAW_MAX_CHARS
    clean_rejects = tmp_path / "clean_rejects.jsonl"
    cfg = CleanConfig(language=LanguageConfig(enabled=False), length=LengthConfig(max_tokens=None),
                      near_duplicates=NearDuplicatesConfig(enabled=False))
    stats = clean_file(ingested, tmp_path / "clean.jsonl", clean_rejects, cfg)
    header, too_long = [orjson.loads(line) for line in clean_rejects.read_bytes().splitlines()]
    assert header == rejects_header("clean") and read_rejects(clean_rejects) == [too_long]
    assert stats.reasons == {"too_long": 1} and too_long["reason"].startswith("too long: 2")
    raw = too_long["raw"]
    assert raw["instruction"] == ALPACA["instruction"] and huge_answer.startswith(raw["output"])
    assert len(raw["output"]) < RAW_MAX_CHARS and too_long["raw_chars"] > len(huge_answer)
    assert clean_rejects.stat().st_size < 4 * RAW_MAX_CHARS


def test_symlinks_each_real_file_once_loops_and_dangling_links_reported(tmp_path, caplog):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.jsonl").write_text(lines(ALPACA), encoding="utf-8")
    (data / "sub" / "b.jsonl").write_text(lines({**ALPACA, "output": "Kışlık buğday ekimde ekilir."}),
                                          encoding="utf-8")
    os.symlink(".", data / "self")  # the folder itself: a loop
    os.symlink("..", data / "sub" / "up")  # a folder above: a loop
    os.symlink("sub", data / "again")  # a second path to a folder
    os.symlink("a.jsonl", data / "0-alias.jsonl")  # sorts first, but a.jsonl is read under its own name
    os.symlink("gone.jsonl", data / "dangling.jsonl")
    outside = tmp_path / "outside.jsonl"
    outside.write_text(lines({**ALPACA, "instruction": "Arpa ne zaman ekilir?"}), encoding="utf-8")
    os.symlink(outside, data / "linked.jsonl")  # a link to a file elsewhere is read
    with caplog.at_level("WARNING", logger="hasat"):
        result = ingest(data)
    assert sorted(result.stats.files) == sorted(str(data / n) for n in ("a.jsonl", "linked.jsonl", "sub/b.jsonl"))
    assert len(result.records) == 3 and not result.rejects
    assert result.stats.links.counts() == {"loops": 2, "dangling": 1, "duplicates": 2}
    assert stats_dict(result.stats)["links"] == {"loops": 2, "dangling": 1, "duplicates": 2}  # metrics/ingest.json
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 5 and all("\n" not in line for line in logged)
    assert any("self: symbolic link loop" in line for line in logged)
    assert any("dangling.jsonl: dangling symbolic link (to gone.jsonl)" in line for line in logged)
    assert any("0-alias.jsonl: same file as" in line and line.endswith("a.jsonl, read once") for line in logged)


def test_a_file_mixing_chat_kinds_ingests_both_and_names_rows_that_fit_none(tmp_path):
    openai = {"messages": [{"role": "user", "content": "Arı ne yapar?"}, {"role": "assistant", "content": "Bal."}]}
    sharegpt = {"conversations": [{"from": "human", "value": "Toprak?"}, {"from": "gpt", "value": "Verimli."}],
                "system": "Tarım asistanısın."}
    alpaca = {"instruction": "Fındık ne zaman toplanır?", "output": "Ağustosta."}
    path = tmp_path / "mixed.jsonl"
    path.write_text(lines(openai, sharegpt, {"soru": "Hangi alan?", "cevap": "Hiçbiri"}, alpaca,
                          {"conversations": None, "id": 7}, {"text": "Maç bitti.", "label": "spor"}, sharegpt),
                    encoding="utf-8")
    result = ingest(path)
    assert [r["source"].rsplit(":", 1)[1] for r in result.records] == ["1", "2", "4", "7"]
    assert result.records[1]["messages"][0] == {"role": "system", "content": "Tarım asistanısın."}
    reasons = {r["source"].rsplit(":", 1)[1]: r["reason"] for r in result.rejects}
    assert reasons["3"] == ("row fits no schema: it needs messages or conversations or instruction + output or "
                            "text + label or chosen + rejected or prompt + completion + label (found: cevap, soru)")
    assert reasons["5"] == "missing field 'conversations'"
    assert reasons["6"].startswith("a classification row (text + label) among chat rows")
    stats = result.stats.files[str(path)]
    assert stats.schema == "alpaca+chat+sharegpt" and stats.schemas == {"chat": 1, "sharegpt": 2, "alpaca": 1}
    configured = ingest(path, schema="chat")  # a configured schema holds for every row
    assert len(configured.records) == 1 and "missing field 'messages'" in configured.rejects[0]["reason"]
