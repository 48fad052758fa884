import json
import re

import pytest

from pipeline.errors import HasatError
from pipeline.config import SourceConfig
from pipeline.data.ingest import ingest

ALPACA = {"instruction": "Buğday ne zaman ekilir?", "input": "", "output": "Orta Anadolu'da ekimde ekilir."}


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def jsonl(*rows) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def accounted(result):
    """Every row read is a record or a reject, per file."""
    for name, stats in result.stats.files.items():
        records = sum(1 for r in result.records if r["source"].rsplit(":", 1)[0] == name
                      and not r["meta"].get("sample_copy"))
        rejects = sum(1 for r in result.rejects if r["source"].rsplit(":", 1)[0] == name)
        assert stats.read == stats.kept + stats.rejected == records + rejects, name
    return True


def test_jsonl_good_and_broken_lines_account_for_every_row(tmp_path):
    f = write(tmp_path / "a.jsonl", "\n".join([
        json.dumps({"instruction": "Buğday ne zaman ekilir?", "input": "", "output": "Ekimde.", "topic": "tahil"}),
        '{"instruction": "Kırık satır", "output": ',
        json.dumps({"instruction": "Çıktısı yok"}),
        json.dumps(["not", "an", "object"]),
        json.dumps({"instruction": "Sayı", "output": 42}),
        "",
        json.dumps({"instruction": "Arı", "output": "Bal yapar."}),
    ]) + "\n")
    result = ingest(f)
    assert [r["instruction"] for r in result.records] == ["Buğday ne zaman ekilir?", "Arı"]
    assert result.records[0]["meta"] == {"topic": "tahil"}
    assert result.records[1]["input"] == ""
    reasons = {r["source"].rsplit(":", 1)[1]: r["reason"] for r in result.rejects}
    assert reasons["2"].startswith("invalid JSON")
    assert reasons["3"] == "missing field 'output'"
    assert reasons["4"].startswith("expected an object")
    assert reasons["5"] == "field 'output' is int, expected text"
    assert result.rows_read_by_file[str(f)] == len(result.records) + len(result.rejects) == 6
    assert result.stats.files[str(f)].reasons == {"invalid_json": 1, "missing_field": 1, "not_an_object": 1,
                                                  "wrong_type": 1}
    assert accounted(result)


def test_json_array_wrapped_array_and_jsonl_named_json(tmp_path):
    rows = [{"instruction": "Soru", "output": "Yanıt"}, {"instruction": "Soru 2"}]
    arr = ingest(write(tmp_path / "a.json", json.dumps(rows, ensure_ascii=False)))
    assert len(arr.records) == 1 and arr.rejects[0]["source"].endswith("a.json:item 2")
    wrapped = ingest(write(tmp_path / "b.json", json.dumps({"data": rows})))
    assert len(wrapped.records) == 1
    lines = ingest(write(tmp_path / "c.json", jsonl(*rows)))
    assert len(lines.records) == 1 and lines.rejects[0]["source"].endswith("c.json:2")
    assert lines.stats.files[str(tmp_path / "c.json")].format == "jsonl"


def test_json_array_that_does_not_parse_names_line_and_column(tmp_path):
    f = write(tmp_path / "bad.json", '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": }\n]')
    with pytest.raises(HasatError, match=r"bad.json: not valid JSON \(line 3, column 19"):
        ingest(f)


def test_csv_with_bom_quoted_newlines_and_short_rows(tmp_path):
    text = ('instruction,input,output\n'
            '"Toprak pH\'ı nasıl ölçülür?",,"Toprak örneği alınır,\nlaboratuvarda ölçülür."\n'
            'eksik satır\n'
            'Sulama ne zaman yapılır?,,Sabah erken saatlerde.\n')
    result = ingest(write(tmp_path / "a.csv", "\ufeff" + text))
    assert [r["output"] for r in result.records] == ["Toprak örneği alınır,\nlaboratuvarda ölçülür.",
                                                     "Sabah erken saatlerde."]
    assert result.rejects[0]["source"].endswith("a.csv:row 3")
    assert "1 cells, header has 3" in result.rejects[0]["reason"]
    assert result.stats.files[str(tmp_path / "a.csv")].encoding == "utf-8-sig"


def test_turkish_excel_csv_semicolons_cp1254_crlf_and_mapping(tmp_path):
    text = ('talimat;girdi;cevap;konu\r\n'
            'Şeker pancarı ne zaman sökülür?;;"Ekim ayında; kök olgunlaşınca.";tahil\r\n'
            '"Çok satırlı\r\nsoru?";"İzmir, Ödemiş";Ilık iklimde ığdır.;genel;;\r\n')
    f = write(tmp_path / "excel.csv", text, "cp1254")
    result = ingest(f, columns={"talimat": "instruction", "girdi": "input", "cevap": "output"})
    assert [r["instruction"] for r in result.records] == ["Şeker pancarı ne zaman sökülür?", "Çok satırlı\r\nsoru?"]
    assert result.records[0]["output"] == "Ekim ayında; kök olgunlaşınca." and result.records[0]["meta"] == {"konu": "tahil"}
    assert result.records[1]["input"] == "İzmir, Ödemiş" and result.records[1]["meta"] == {"konu": "genel"}
    stats = result.stats.files[str(f)]
    assert (stats.encoding, stats.format, stats.schema) == ("cp1254", "csv", "alpaca")


def test_csv_stray_quote_keeps_the_good_rows(tmp_path):
    text = ('instruction,output\n'
            'Arı nasıl kışlatılır?,Kovan yalıtılır.\n'
            '"Bozuk satır,yanıt\n'
            'Gübre ne zaman atılır?,İlkbaharda.\n'
            'Sulama?,Sabah.\n')
    result = ingest(write(tmp_path / "a.csv", text))
    assert [r["instruction"] for r in result.records] == ["Arı nasıl kışlatılır?", "Gübre ne zaman atılır?",
                                                          "Sulama?"]
    assert len(result.rejects) == 1 and "unbalanced quote" in result.rejects[0]["reason"]
    assert "line 3" in result.rejects[0]["reason"] and accounted(result)


def test_csv_missing_required_column_is_fatal(tmp_path):
    with pytest.raises(HasatError, match="lacks column"):
        ingest(write(tmp_path / "a.csv", "soru,cevap\nx,y\n"))


def test_mapped_column_missing_is_fatal(tmp_path):
    with pytest.raises(HasatError, match=r"a.csv: mapped column\(s\) 'talimat' not found \(columns: soru, cevap\)"):
        ingest(write(tmp_path / "a.csv", "soru,cevap\nx,y\n"), columns={"talimat": "instruction"})
    f = write(tmp_path / "b.jsonl", jsonl({"soru": "x", "output": "y"}))
    with pytest.raises(HasatError, match=r"b.jsonl: mapped column\(s\) 'talimat' found in no row"):
        ingest(f, columns={"talimat": "instruction"})


def test_tsv_and_pipe_delimited(tmp_path):
    result = ingest(write(tmp_path / "a.tsv", "instruction\tinput\toutput\nSoru\t\tYanıt\n"))
    assert result.records[0]["output"] == "Yanıt"
    piped = ingest(write(tmp_path / "b.csv", "instruction|output\nSoru, virgüllü|Yanıt; noktalı\n"))
    assert piped.records[0]["instruction"] == "Soru, virgüllü"


@pytest.mark.parametrize("encoding, reported", [
    ("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("utf-16", "utf-16"), ("utf-16-le", "utf-16-le"),
    ("utf-16-be", "utf-16-be"), ("cp1254", "cp1254"), ("iso-8859-9", None),
])
def test_encodings_are_detected_and_converted(tmp_path, encoding, reported):
    rows = [{"instruction": "Şırnak'ta ğ, ı, İ, ş harfleri: IĞDIR ÇİFTÇİSİ", "output": "Öğüt: Ürün güzel."},
            {"instruction": "Çay nerede yetişir?", "output": "Rize ve Trabzon’da… “Karadeniz”"}]
    if encoding == "iso-8859-9":
        rows = rows[:1]  # iso-8859-9 has no typographic quotes
    f = write(tmp_path / "a.jsonl", jsonl(*rows), encoding)
    result = ingest(f)
    assert [r["instruction"] for r in result.records] == [r["instruction"] for r in rows]
    assert result.records[-1]["output"] == rows[-1]["output"]
    found = result.stats.files[str(f)].encoding
    assert found == reported if reported else found in ("iso-8859-9", "cp1254")


def test_truncated_utf8_at_eof_rejects_only_that_row(tmp_path):
    data = jsonl(ALPACA).encode() + '{"instruction": "Kesik ş'.encode()[:-1]
    result = ingest(write(tmp_path / "a.jsonl", data))
    assert len(result.records) == 1 and result.stats.files[str(tmp_path / "a.jsonl")].encoding == "utf-8"
    assert result.rejects[0]["reason"].startswith("undecodable byte 0xc5 at column 24")
    assert result.rejects[0]["source"].endswith("a.jsonl:2")


def test_a_cp1254_line_in_a_utf8_file_is_quarantined(tmp_path):
    good = [dict(ALPACA, instruction=f"Soru {i}: ağaç, ılık, şeker") for i in range(5)]
    data = jsonl(*good).encode() + jsonl({"instruction": "Şeker", "output": "ığ"}).encode("cp1254")
    result = ingest(write(tmp_path / "a.jsonl", data))
    assert len(result.records) == 5 and result.rejects[0]["reason"].startswith("undecodable byte 0xde")
    json.dumps(result.rejects)  # the raw text is writable


def test_mixed_line_endings_and_nul_bytes(tmp_path):
    data = (json.dumps(ALPACA) + "\r\n" + json.dumps(dict(ALPACA, output="b")) + "\r"
            + json.dumps(dict(ALPACA, output="c")) + "\n" + '{"instruction": "x\x00", "output": "y"}\n'
            + json.dumps(dict(ALPACA, output="d")))
    result = ingest(write(tmp_path / "a.jsonl", data))
    assert [r["output"] for r in result.records] == [ALPACA["output"], "b", "c", "d"]
    assert [r["source"].rsplit(":", 1)[1] for r in result.records] == ["1", "2", "3", "5"]
    assert result.rejects[0]["source"].endswith(":4") and "invalid JSON" in result.rejects[0]["reason"]


def test_lone_surrogate_escape_is_rejected(tmp_path):
    result = ingest(write(tmp_path / "a.jsonl", jsonl(ALPACA) + '{"instruction": "a\\ud83d", "output": "b"}\n'))
    assert len(result.records) == 1 and "surrogate" in result.rejects[0]["reason"]


def test_chat_sharegpt_and_classification_schemas(tmp_path):
    chat = {"messages": [{"role": "system", "content": "Kısa yanıt ver."}, {"role": "user", "content": "Arı?"},
                         {"role": "assistant", "content": "Bal yapar."}, {"role": "user", "content": "Peki?"},
                         {"role": "assistant", "content": "Polen taşır."}], "kaynak": "x"}
    bad_chat = [{"messages": [{"role": "user", "content": "Soru?"}]},
                {"messages": [{"role": "robot", "content": "a"}, {"role": "assistant", "content": "b"}]},
                {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": None}]}]
    result = ingest(write(tmp_path / "chat.jsonl", jsonl(chat, *bad_chat)))
    assert result.records[0]["messages"] == chat["messages"] and result.records[0]["meta"] == {"kaynak": "x"}
    assert [r["reason"] for r in result.rejects] == [
        "a conversation needs a user and an assistant message",
        "messages[0]: unknown role 'robot' (known: system, user, assistant)",
        "messages[1]: content is missing, expected text"]
    share = {"system": "Tarım asistanısın.", "conversations": [
        {"from": "human", "value": "Toprak?"}, {"from": "gpt", "value": "Verimli."}]}
    result = ingest(write(tmp_path / "share.json", json.dumps([share, {"conversations": [
        {"from": "tool", "value": "x"}, {"from": "gpt", "value": "y"}]}])))
    assert result.records[0]["messages"] == [{"role": "system", "content": "Tarım asistanısın."},
                                             {"role": "user", "content": "Toprak?"},
                                             {"role": "assistant", "content": "Verimli."}]
    assert "conversations" not in result.records[0] and "unknown speaker 'tool'" in result.rejects[0]["reason"]
    labelled = ingest(write(tmp_path / "cls.csv", "metin;etiket\nMaç 2-1 bitti.;spor\nFındık fiyatı;\n"),
                      columns={"metin": "text", "etiket": "label"})
    assert labelled.records[0]["text"] == "Maç 2-1 bitti." and labelled.records[0]["label"] == "spor"
    assert labelled.records[1]["label"] == ""  # an empty label is judged by clean (drop_empty)
    ints = ingest(write(tmp_path / "ints.jsonl", jsonl({"text": "a", "label": 3}, {"text": "b", "label": True})))
    assert ints.records[0]["label"] == "3" and "field 'label' is bool" in ints.rejects[0]["reason"]


def test_schema_override_and_undetectable_schema(tmp_path):
    f = write(tmp_path / "a.jsonl", jsonl({"text": "Metin", "label": "x", "instruction": "Soru", "output": "Yanıt"}))
    assert ingest(f, schema="classification").records[0]["meta"] == {"instruction": "Soru", "output": "Yanıt"}
    with pytest.raises(HasatError, match="cannot tell the schema.*found: bar, foo"):
        ingest(write(tmp_path / "b.jsonl", '{"foo": 1}\n{"bar": 2}\n'))


def test_all_rows_rejected_is_fatal(tmp_path):
    with pytest.raises(HasatError, match="no usable rows"):
        ingest(write(tmp_path / "a.jsonl", '{"foo": 1}\n{"bar": 2}\n'), schema="alpaca")


def test_too_many_bad_rows_stop_with_the_share_and_first_reason(tmp_path):
    f = write(tmp_path / "a.jsonl", jsonl(ALPACA) + '{"broken\n{"broken\n')
    with pytest.raises(HasatError, match=r"a.jsonl: 2 of 3 rows rejected \(67% > max_reject_share 50%\); "
                                         r"most often invalid_json \(2\), first: invalid JSON"):
        ingest(f, max_reject_share=0.5)
    assert len(ingest(f, max_reject_share=0.7).records) == 1


def test_parquet_with_alpaca_and_chat_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"talimat": ["Soru 1", "Soru 2"], "output": ["Yanıt 1", None], "n": [1, 2]}),
                   tmp_path / "a.parquet")
    result = ingest(tmp_path / "a.parquet", columns={"talimat": "instruction"})
    assert result.records[0]["instruction"] == "Soru 1" and result.records[0]["meta"] == {"n": 1}
    assert result.rejects[0]["source"].endswith("a.parquet:row 2")
    messages = [[{"role": "user", "content": "Arı?"}, {"role": "assistant", "content": "Bal."}]]
    pq.write_table(pa.table({"messages": messages}), tmp_path / "b.parquet")
    chat = ingest(tmp_path / "b.parquet")
    assert chat.records[0]["messages"] == messages[0] and chat.stats.files[str(tmp_path / "b.parquet")].schema == "chat"
    write(tmp_path / "c.parquet", b"PAR1 not really")
    with pytest.raises(HasatError, match="c.parquet: not a readable Parquet file"):
        ingest(tmp_path / "c.parquet")


def test_hf_dataset_saved_to_disk_with_class_labels(tmp_path):
    from datasets import ClassLabel, Dataset, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=["spor", "tarim"])})
    Dataset.from_dict({"text": ["Maç bitti.", "Fındık hasadı başladı."], "label": [0, 1]},
                      features=features).save_to_disk(str(tmp_path / "haber"))
    result = ingest(tmp_path)  # the folder is found as one dataset, not as its arrow files
    assert [r["label"] for r in result.records] == ["spor", "tarim"]
    assert result.records[0]["source"] == f"{tmp_path / 'haber'}:row 1"
    assert result.stats.files[str(tmp_path / "haber")].format == "hf"


def test_hf_load_dataset_on_a_local_folder_and_missing_hub_name(tmp_path, monkeypatch):
    import datasets
    import huggingface_hub

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # no network here: fail fast
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    folder = tmp_path / "root" / "hfjson"
    folder.mkdir(parents=True)
    write(folder / "train.jsonl", jsonl(ALPACA, dict(ALPACA, output="İkinci yanıt.")))
    result = ingest(tmp_path / "root", sources=[SourceConfig(path="hfjson", format="hf")])
    assert [r["output"] for r in result.records] == [ALPACA["output"], "İkinci yanıt."]
    with pytest.raises(HasatError, match="no-such-org/no-such-set: could not load the Hugging Face dataset"):
        ingest(tmp_path / "root", sources=[SourceConfig(path="no-such-org/no-such-set", format="hf")])


@pytest.mark.parametrize("name, content, message", [
    ("empty.jsonl", "", "file is empty"),
    ("blank.jsonl", "\n  \n", "file is empty"),
    ("bom-only.csv", "\ufeff", "file is empty"),
    ("header-only.csv", "instruction,output\n", "file is empty"),
    ("data.xlsx", "PK\x03\x04", "unknown data format '.xlsx'"),
    ("noext", "x", "unknown data format '(no extension)'"),
    ("binary.jsonl", b"\x00\x01\x02\x03" * 20, "binary file"),
    ("zipped.jsonl", b"PK\x03\x04\x14\x00\x00\x00" + b"x" * 50, "binary file (a ZIP archive"),
    ("image.csv", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "binary file (a PNG image)"),
    ("one-column.csv", "instruction output\nx y\n", "CSV header has one column"),
])
def test_unusable_files_are_one_line_errors(tmp_path, name, content, message):
    f = write(tmp_path / name, content)
    with pytest.raises(HasatError, match=re.escape(message)) as err:
        ingest(f)
    assert str(f) in str(err.value) and "\n" not in str(err.value)


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(HasatError, match="data path not found"):
        ingest(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HasatError, match="holds no data files"):
        ingest(tmp_path / "empty")


def test_folder_reads_every_file_in_order(tmp_path):
    write(tmp_path / "b.jsonl", json.dumps({"instruction": "B", "output": "b"}) + "\n")
    write(tmp_path / "a.csv", "instruction,output\nA,a\n")
    write(tmp_path / ".hidden", "ignored")
    result = ingest(tmp_path)
    assert [r["instruction"] for r in result.records] == ["A", "B"]


def test_sources_with_mappings_and_seeded_weights(tmp_path):
    write(tmp_path / "big.jsonl", jsonl(*[dict(ALPACA, output=f"Yanıt {i}") for i in range(400)]))
    write(tmp_path / "small.csv", "soru,cevap\nA,a\nB,b\n")
    write(tmp_path / "README.md", "not listed, not read")
    sources = [SourceConfig(path="big.jsonl", weight=0.25), SourceConfig(path="small.csv", weight=2.0,
                                                                   columns={"soru": "instruction", "cevap": "output"})]
    first = ingest(tmp_path, sources=sources, seed=7)
    again = ingest(tmp_path, sources=sources, seed=7)
    assert [r["id"] for r in first.records] == [r["id"] for r in again.records]
    big, small = first.stats.files[str(tmp_path / "big.jsonl")], first.stats.files[str(tmp_path / "small.csv")]
    assert 60 < big.kept < 140 and big.sampled_out == 400 - big.kept and big.read == 400
    assert small.kept == 2 and small.copies_added == 2
    copies = [r for r in first.records if r["meta"].get("sample_copy")]
    assert [r["id"] for r in copies] == [f"{r['id']}-1" for r in first.records[-4::2]]
    assert sum(r["reason"].startswith("sampled out (source weight 0.25)") for r in first.rejects) == big.sampled_out
    assert accounted(first)
    other = ingest(tmp_path, sources=sources, seed=8)
    assert [r["id"] for r in other.records] != [r["id"] for r in first.records]


def test_sources_must_stay_inside_the_data_root(tmp_path):
    (tmp_path / "root").mkdir()
    write(tmp_path / "outside.jsonl", jsonl(ALPACA))
    with pytest.raises(HasatError, match=r"must be relative to data.path"):
        ingest(tmp_path / "root", sources=[SourceConfig(path="../outside.jsonl")])
    with pytest.raises(HasatError, match=r"data source not found \(config key data.sources\[0\].path\)"):
        ingest(tmp_path / "root", sources=[SourceConfig(path="nope.jsonl")])


def test_excel_sep_hint_line_and_deeply_nested_json(tmp_path):
    result = ingest(write(tmp_path / "a.csv", "sep=;\r\ninstruction;output\r\nSoru, virgüllü;Yanıt\r\n", "cp1254"))
    assert result.records[0]["instruction"] == "Soru, virgüllü"
    nested = "[" * 5000 + "]" * 5000
    deep = ingest(write(tmp_path / "b.jsonl", jsonl(ALPACA) + '{"instruction": "a", "output": "b", "x": ' + nested + "}\n"),
                  max_reject_share=0.5)
    assert len(deep.records) == 1 and "nested too deeply" in deep.rejects[0]["reason"]


def test_sources_inherit_the_data_level_settings():
    from omegaconf import OmegaConf

    from pipeline.stages.ingest import sources_of

    data = OmegaConf.create({"path": "root", "format": "auto", "schema": "alpaca", "encoding": "cp1254",
                             "columns": {"talimat": "instruction"}, "sources": [
                                 {"path": "a.csv", "format": "auto", "schema": "auto", "encoding": "auto",
                                  "columns": {"cevap": "output"}, "weight": None, "delimiter": None,
                                  "split": "train", "config": None}]})
    defaults, (source,) = sources_of(data)
    assert defaults.columns == {"talimat": "instruction"} and source.schema == "alpaca"
    assert source.encoding == "cp1254" and source.columns == {"talimat": "instruction", "cevap": "output"}


def test_invalid_json_column_counts_characters_not_bytes(tmp_path):
    """Lines are parsed from their UTF-8 bytes; the reject still names the column in the text."""
    broken = '{"instruction": "ağaç şığ", "output": }'
    try:
        json.loads(broken)
    except json.JSONDecodeError as err:
        expected = f"invalid JSON at column {err.colno}: {err.msg}"
    result = ingest(write(tmp_path / "a.jsonl", jsonl(ALPACA) + broken + "\n" + "\ufeff" + jsonl(ALPACA)))
    assert len(result.records) == 1 and result.rejects[0]["reason"] == expected
    assert "invalid JSON" in result.rejects[1]["reason"] and result.rejects[1]["source"].endswith(":3")
