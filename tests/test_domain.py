"""A new domain in one file: a finance data config under conf/data/ and nothing else gets the neutral
domain settings (no agriculture system prompt, no agriculture benchmark); token lengths that fit the
data (all rows' distribution, the max_drop_share stop, max_seq_len=auto); the task/data mismatch and
the column mapping from the command line; the classifier's load report."""

import json
import logging
import re
import shutil
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from pipeline.config import GENERIC_SYSTEM_PROMPT
from pipeline.config_loader import load_config
from pipeline.data.rejects import read_rejects
from pipeline.errors import HasatError
from tests.conftest import REPO, copy_config, run_stage_cli

# A small Turkish finance instruction set (Alpaca JSON), answers of very different lengths.
FINANCE = [
    ("Enflasyon nedir?", "Fiyatlar genel düzeyinin sürekli olarak artmasıdır; paranın satın alma gücü düşer."),
    ("Mevduat faizi nasıl hesaplanır?", "Anapara, yıllık faiz oranı ve vade gün sayısı çarpılıp 365'e bölünür; "
     "sonuçtan stopaj kesintisi düşülür."),
    ("Kredi kartı asgari ödeme tutarı ne demektir?", "Dönem borcunun, yasal gecikme faizine düşmemek için en az "
     "ödenmesi gereken kısmıdır."),
    ("Hisse senedi ile tahvil arasındaki fark nedir?", "Hisse senedi şirkete ortaklık payı verir, getirisi şirketin "
     "kârına bağlıdır. Tahvil ise borç senedidir; ihraççı anapara ve faizi belirli tarihlerde öder."),
    ("Bireysel emeklilik sisteminde devlet katkısı kaç yüzdedir?", "Katılımcının ödediği katkı payının yüzde "
     "otuzu oranında devlet katkısı hesabına yatırılır, belirli bir üst sınıra kadar."),
    ("Döviz kuru neden dalgalanır?", "Dış ticaret dengesi, faiz farkları, sermaye akımları ve beklentiler kuru "
     "sürekli etkiler."),
    ("Bütçe açığı ekonomiyi nasıl etkiler?", "Kamu harcamalarının gelirleri aşması borçlanma ihtiyacını artırır. "
     "Devlet piyasadan borçlandıkça faizler yükselebilir, özel sektörün krediye erişimi zorlaşabilir. Açık "
     "merkez bankası kaynaklarıyla finanse edilirse enflasyon baskısı doğar. Uzun süren açıklar risk primini "
     "yükseltir, yabancı yatırımcının güvenini azaltır ve borç servisinin bütçedeki payını büyütür."),
    ("Vadeli işlem sözleşmesi nedir?", "Bir varlığın bugünden belirlenen fiyatla ileri bir tarihte alınıp "
     "satılmasını öngören standart sözleşmedir; borsada işlem görür ve teminat ister."),
    ("Kira geliri vergisi nasıl beyan edilir?", "Konut kira geliri istisna tutarını aşıyorsa mart ayında yıllık "
     "beyanname ile bildirilir; götürü veya gerçek gider yöntemi seçilebilir."),
    ("Merkez bankası politika faizini neden artırır?", "Talebi soğutmak ve enflasyonu düşürmek için; kredi "
     "maliyeti artınca harcama ve borçlanma yavaşlar."),
    ("Yatırım fonu nasıl çalışır?", "Birçok yatırımcının parası tek bir portföyde toplanır ve profesyonel "
     "yöneticiler tarafından hisse, tahvil ve para piyasası araçlarına yatırılır. Fonun birim fiyatı her gün "
     "portföydeki varlıkların değerine göre hesaplanır. Yatırımcı payını bu fiyattan alır veya satar; yönetim "
     "ücreti fon varlığından günlük olarak kesilir. Fon türleri risk düzeyine göre ayrılır ve izahname "
     "yatırım stratejisini, ücretleri ve riskleri açıklar."),
    ("Çek ile senet arasındaki fark nedir?", "Çek bankaya hitaben yazılan bir ödeme emridir; senet ise borçlunun "
     "belirli bir tarihte ödeme sözüdür."),
    ("Konut kredisi erken kapatılırsa ne olur?", "Kalan anapara ödenir ve bankaya, sözleşmede yazan sınırlar "
     "içinde erken ödeme tazminatı verilir."),
    ("Cari açık neyi gösterir?", "Bir ülkenin mal, hizmet ve gelir akımlarında dünyaya ödediğinin aldığından "
     "fazla olduğunu gösterir."),
    ("Altın neden güvenli liman sayılır?", "Belirsizlik dönemlerinde değerini koruma eğiliminde olduğu ve hiçbir "
     "ihraççının borcu olmadığı için yatırımcılar krizlerde altına yönelir."),
    ("Kredi notu nasıl yükseltilir?", "Borçlar zamanında ödenir, kart limitlerinin küçük bir kısmı kullanılır ve "
     "kısa sürede çok sayıda kredi başvurusu yapılmaz."),
    ("Temettü nedir?", "Şirketin dağıtılabilir kârından ortaklarına pay oranında yaptığı nakit veya bedelsiz "
     "hisse ödemesidir."),
    ("Enflasyona karşı birikim nasıl korunur?", "Getirisi enflasyona endeksli tahviller, çeşitlendirilmiş hisse "
     "portföyleri ve gayrimenkul gibi reel varlıklar birlikte değerlendirilir. Tek bir araca yoğunlaşmak riski "
     "artırır; vade, likidite ihtiyacı ve risk toleransı birlikte düşünülmelidir. Düzenli aralıklarla portföy "
     "yeniden dengelenir, masraflar ve vergiler getiriden düşülerek karşılaştırılır. Acil durum fonu her zaman "
     "kolayca nakde çevrilebilir bir hesapta tutulur."),
    ("Sermaye piyasası kurulu ne iş yapar?", "Sermaye piyasasını düzenler ve denetler, yatırımcıların hak ve "
     "yararlarını korur."),
    ("Faiz ile getiri oranı aynı şey midir?", "Hayır; faiz borç verilen paranın bedelidir, getiri oranı ise bir "
     "yatırımın fiyat değişimi ve ödemeleri dahil toplam kazancıdır."),
]
# Classification rows (text/label), for the task/data mismatch.
LABELLED = [("Merkez bankası faiz kararını açıkladı, piyasalar yükselişle tepki verdi.", "ekonomi"),
            ("Milli takım deplasmanda üç golle kazandı ve grubunu lider tamamladı.", "spor"),
            ("Borsa İstanbul günü yüzde iki değer kazancıyla tamamladı.", "ekonomi"),
            ("Şampiyonlar ligi kuraları yarın çekilecek, temsilcimizin rakibi belli olacak.", "spor")]


def finance_workdir(root, tiny_model_dir):
    """A copy of the config with one new data config (conf/data/finans.yaml) and its Alpaca JSON file."""
    copy_config(root)
    data = root / "veri" / "finans"
    data.mkdir(parents=True)
    rows = [{"instruction": q, "input": "", "output": a} for q, a in FINANCE]
    (data / "finans.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    (root / "conf" / "data" / "finans.yaml").write_text("name: finans\npath: veri/finans\n", encoding="utf-8")
    shutil.copytree(tiny_model_dir, root / "models" / "base")
    return root


@pytest.fixture(scope="module")
def finance(tmp_path_factory, tiny_model_dir):
    """The finance data ingested and cleaned once (stage CLIs, data=finans)."""
    root = finance_workdir(tmp_path_factory.mktemp("finans"), tiny_model_dir)
    for stage in ("ingest", "clean"):
        result = run_stage_cli(f"pipeline.stages.{stage}", "data=finans", cwd=root)
        assert result.returncode == 0, result.stderr
    return root


@pytest.fixture(scope="module")
def finance_tokenized(finance):
    """Every finance row tokenized at its full length (the limit above all of them)."""
    result = run_stage_cli("pipeline.stages.tokenize", "data=finans", "tokenize.max_seq_len=1024", cwd=finance)
    assert result.returncode == 0, result.stderr
    return tokenized(finance)


def error_line(result) -> str:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    [line] = [line for line in result.stderr.splitlines() if " error: " in line]
    return line


def tokenized(root) -> list[dict]:
    return [json.loads(line) for line in (root / "data" / "processed" / "tokenized.jsonl").open(encoding="utf-8")]


def test_new_data_config_gets_the_neutral_domain_not_agriculture(finance_tokenized, smollm2_tokenizer):
    rows = finance_tokenized
    assert len(rows) == len(FINANCE)
    texts = [smollm2_tokenizer.decode(r["input_ids"]) for r in rows]
    assert all(GENERIC_SYSTEM_PROMPT in text for text in texts)
    assert not any(re.search(r"tarım|tarim|agricultur", text, re.IGNORECASE) for text in texts)
    # the shipped agriculture config still gets its own system prompt
    shipped = load_config([], params_file=REPO / "params.yaml", conf_dir=REPO / "conf")
    assert "Türkiye tarımı" in shipped.data.system_prompt and shipped.data.benchmark.endswith("tarim_mc/sorular.jsonl")


def test_new_data_config_has_no_benchmark_either_way_it_is_composed(finance, tmp_path):
    from pipeline.tasks.sft.report import benchmark_questions

    by_cli = load_config(["data=finans"], params_file=finance / "params.yaml", conf_dir=finance / "conf")
    composed = tmp_path / "params.yaml"  # what `dvc exp run -S data=finans` writes (DVC's Hydra composition)
    done = subprocess.run([sys.executable, "-m", "pipeline.compose", "data=finans", "--output", str(composed)],
                          cwd=finance, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    by_hydra = load_config([], params_file=composed, conf_dir=finance / "conf")
    for cfg in (by_cli, by_hydra):
        assert (cfg.data.name, cfg.data.domain, cfg.data.benchmark) == ("finans", "general", None)
        assert cfg.data.system_prompt == GENERIC_SYSTEM_PROMPT and cfg.data.columns == {}
        assert benchmark_questions(cfg) == []
    assert len(benchmark_questions(load_config([], params_file=REPO / "params.yaml"))) == 93


def test_model_card_names_the_data_domain(finance):
    from pipeline.tasks.base import domain_tag, trained_on

    cfg = load_config(["data=finans", "data.domain=finance"], params_file=finance / "params.yaml",
                      conf_dir=finance / "conf")
    assert domain_tag(cfg) == "finance" and trained_on(cfg) == "the `finans` data (finance domain)"
    shipped = load_config([], params_file=REPO / "params.yaml")
    assert domain_tag(shipped) == "agriculture" and "agriculture instruction set" in trained_on(shipped)


def test_moved_domain_keys_are_named(finance):
    with pytest.raises(HasatError, match=r"'task.system_prompt' moved to 'data.system_prompt'"):
        load_config(["task.system_prompt=Sen bir asistansın."], params_file=finance / "params.yaml")
    params = OmegaConf.load(finance / "params.yaml")  # a params.yaml composed before the move
    params.eval.mc.path = "data/benchmarks/tarim_mc/sorular.jsonl"
    old = finance / "old_params.yaml"
    OmegaConf.save(params, old)
    with pytest.raises(HasatError, match=r"'eval.mc.path' moved to 'data.benchmark'"):
        load_config([], params_file=old)


def test_length_limit_that_drops_too_many_rows_stops_and_auto_fits(finance, finance_tokenized):
    from pipeline.train.lengths import length_keeping

    lengths = sorted(len(r["input_ids"]) for r in finance_tokenized)
    fits = length_keeping(lengths, 0.95)
    assert fits == lengths[18] < lengths[19]  # 19 of 20 rows (95%) fit in the 19th shortest
    limit = lengths[15]  # keeps 16 of 20: drops 20%
    dropped = sum(n > limit for n in lengths)
    line = error_line(run_stage_cli("pipeline.stages.tokenize", "data=finans", f"tokenize.max_seq_len={limit}",
                                    cwd=finance))
    assert line == (f"hasat tokenize: error: tokenize: {dropped} of 20 rows ({dropped / 20:.1%}) are longer than "
                    f"tokenize.max_seq_len={limit} and would be dropped, more than tokenize.max_drop_share=5%; "
                    f"tokenize.max_seq_len={fits} keeps 95% of them (or set tokenize.max_seq_len=auto)")
    # auto picks the length that keeps 95%, and the stats describe every row, not only the ones kept
    auto = run_stage_cli("pipeline.stages.tokenize", "data=finans", "tokenize.max_seq_len=auto", cwd=finance)
    assert auto.returncode == 0, auto.stderr
    stats = json.loads((finance / "metrics" / "tokenize.json").read_text())
    assert (stats["max_seq_len"], stats["max_seq_len_setting"], stats["context_length"]) == (fits, "auto", 1024)
    assert stats["rows_out"] == 19 and stats["dropped_too_long"] == 1 and stats["share_dropped_too_long"] == 0.05
    assert stats["all_rows"]["rows"] == 20 and stats["all_rows"]["tokens_max"] == lengths[-1] > stats["tokens_max"]
    assert stats["max_seq_len_keeping"] == {"share": 0.95, "tokens": fits}
    assert f"max_seq_len {fits} (auto) drops 5.0%, truncates 0.0%" in auto.stderr
    [reject] = read_rejects(finance / "data" / "rejects" / "tokenize.jsonl")
    assert reject["reason"] == f"too long: {lengths[-1]} tokens > max_seq_len {fits}"
    assert (reject["raw"]["instruction"], reject["raw"]["output"]) in FINANCE


def test_auto_length_is_capped_by_the_model_context(smollm2_tokenizer):
    from pipeline.train.prompts import tokenize_records

    rows = [{"id": str(i), "source": f"f:{i}", "instruction": q, "input": "", "output": a}
            for i, (q, a) in enumerate(FINANCE)]
    shortest = min(len(r["input_ids"]) for r in tokenize_records(rows, smollm2_tokenizer, "chat_template", None,
                                                                 False, 4096, "drop").records)
    context = shortest - 1
    with pytest.raises(HasatError, match=f"more than the model's context of {context}: shorten the rows"):
        tokenize_records(rows, smollm2_tokenizer, "chat_template", None, False, "auto", "drop", 0.05, context)
    capped = tokenize_records(rows, smollm2_tokenizer, "chat_template", None, False, "auto", "truncate", 0.05, context)
    assert capped.max_seq_len == context and all(len(r["input_ids"]) <= context for r in capped.records)
    assert sorted(capped.full_lengths)[0] == shortest


@pytest.mark.parametrize("bad", ["0", "-5", "kısa", "true"])
def test_max_seq_len_is_a_positive_number_or_auto(bad):
    with pytest.raises(HasatError, match="tokenize.max_seq_len"):
        load_config([f"tokenize.max_seq_len={bad}"], params_file=REPO / "params.yaml")
    assert load_config(["tokenize.max_seq_len=auto"], params_file=REPO / "params.yaml").tokenize.max_seq_len == "auto"


def write_rows(root, rows):
    data = root / "veri" / "karisik"
    data.mkdir(parents=True)
    (data / "satirlar.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                         encoding="utf-8")
    return data


@pytest.mark.parametrize("rows, task, expected", [
    ([{"text": t, "label": label} for t, label in LABELLED], "sft",
     "the data has text/label rows: run with task=classification (task.kind=sft needs instruction/output or chat rows)"),
    ([{"instruction": q, "input": "", "output": a} for q, a in FINANCE[:4]], "classification",
     "the data has instruction/output or chat rows: run with task=sft (task.kind=classification needs text/label rows)"),
])
def test_task_that_does_not_fit_the_data_names_the_one_that_does(tmp_path, tiny_model_dir, rows, task, expected):
    copy_config(tmp_path)
    shutil.copytree(tiny_model_dir, tmp_path / "models" / "base")
    data = write_rows(tmp_path, rows)
    ingest = run_stage_cli("pipeline.stages.ingest", f"data.path={data}", cwd=tmp_path)
    assert ingest.returncode == 0, ingest.stderr
    (tmp_path / "data" / "interim" / "ingested.jsonl").rename(tmp_path / "data" / "interim" / "clean.jsonl")
    line = error_line(run_stage_cli("pipeline.stages.tokenize", f"task={task}", cwd=tmp_path))
    assert line == f"hasat tokenize: error: {data / 'satirlar.jsonl'}:1: {expected}"
    assert not (tmp_path / "data" / "processed").exists()


def test_columns_from_the_command_line_replace_the_data_configs_mapping(tmp_path):
    copy_config(tmp_path)
    (tmp_path / "conf" / "data" / "excel.yaml").write_text(
        "name: excel\npath: veri\ncolumns: {talimat: instruction, cevap: output}\n", encoding="utf-8")
    cfg = load_config(["data=excel", "data.columns={soru: instruction, yanit: output}"],
                      params_file=tmp_path / "params.yaml", conf_dir=tmp_path / "conf")
    assert dict(cfg.data.columns) == {"soru": "instruction", "yanit": "output"}
    cfg = load_config(["data=excel", "data.columns={}"], params_file=tmp_path / "params.yaml",
                      conf_dir=tmp_path / "conf")
    assert dict(cfg.data.columns) == {}
    # other mappings still merge: one placeholder changed, the others kept
    cfg = load_config(["clean.pii.placeholders={email: '<e-posta>'}"], params_file=tmp_path / "params.yaml")
    assert cfg.clean.pii.placeholders["email"] == "<e-posta>" and cfg.clean.pii.placeholders["iban"] == "[IBAN]"


def test_group_option_replaces_the_section_instead_of_merging(tmp_path):
    copy_config(tmp_path)
    (tmp_path / "conf" / "data" / "excel.yaml").write_text(
        "name: excel\npath: veri\ncolumns: {talimat: instruction}\n", encoding="utf-8")
    cfg = load_config(["data=excel", "data=haber_cls"], params_file=tmp_path / "params.yaml",
                      conf_dir=tmp_path / "conf")
    assert dict(cfg.data.columns) == {} and cfg.data.domain == "news" and cfg.data.system_prompt is None


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture()
def transformers_log():
    handler = Records()
    loggers = [logging.getLogger("transformers"), logging.getLogger("hasat")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler.messages
    for logger in loggers:
        logger.removeHandler(handler)


def test_classifier_head_load_report_is_held_back_only_for_the_head(tiny_model_dir, tmp_path, transformers_log):
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForSequenceClassification

    from pipeline.train.classifier import sequence_classifier

    AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)  # unfiltered: it reports
    assert any("LOAD REPORT" in m and "score.weight" in m for m in transformers_log)
    transformers_log.clear()
    sequence_classifier(tiny_model_dir, ["ekonomi", "spor"])
    assert not any("LOAD REPORT" in m for m in transformers_log)
    # a checkpoint with a weight the model does not have: still said, in one line
    odd = tmp_path / "odd"
    shutil.copytree(tiny_model_dir, odd)
    weights = load_file(odd / "model.safetensors")
    save_file({**weights, "model.extra.weight": weights["model.norm.weight"].clone()}, odd / "model.safetensors",
              metadata={"format": "pt"})
    sequence_classifier(odd, ["ekonomi", "spor"])
    assert [m for m in transformers_log if "LOAD REPORT" in m] == []
    assert any(m.startswith(f"loading {odd} as a classifier: unexpected: model.extra.weight") for m in transformers_log)
