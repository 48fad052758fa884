import json

import pytest

from pipeline.data.clean import (balance_plan, class_weights, clean_file, clean_records, fix_mojibake,
                                normalise_whitespace, remove_control_chars, stats_dict, strip_html)
from pipeline.config import (BalanceConfig, CleanConfig, LanguageConfig, LengthConfig, NearDuplicatesConfig,
                             PiiConfig)
from pipeline.data.rejects import read_rejects
from pipeline.errors import HasatError

SENTENCES = [
    "Buğday ekiminden önce toprak analizi yaptırmak verimi artırır.",
    "Damla sulama suyu doğrudan kök bölgesine vererek tasarruf sağlar.",
    "Arılar kışa girmeden önce kovanların yalıtımı kontrol edilmelidir.",
    "Fındık hasadı Karadeniz'de genellikle ağustos ayında başlar.",
    "Zeytin ağaçlarında budama hasattan sonra kış sonunda yapılır.",
    "Şeker pancarı sökümü ekim ayında kökler olgunlaşınca yapılır.",
]


def rec(i, instruction, output, inp="", **meta):
    return {"id": str(i), "source": f"f.jsonl:{i}", "instruction": instruction, "input": inp, "output": output,
            "meta": meta}


def basic(**overrides) -> CleanConfig:
    """Only the cheap steps: language, near-duplicates and the token-length filter (it needs a base
    tokenizer) off unless a test turns them on."""
    values = dict(language=LanguageConfig(enabled=False), near_duplicates=NearDuplicatesConfig(enabled=False),
                  length=LengthConfig(max_tokens=None))
    return CleanConfig(**{**values, **overrides})


def accounted(result):
    s = result.stats
    assert s.rows_in == s.kept + s.rejected and len(result.rejects) == s.rejected
    assert len(result.records) == s.kept + s.added
    return True


@pytest.mark.parametrize("broken, fixed", [
    ("BuÄŸday Ã¼retimi ve Ã§iftÃ§i", "Buğday üretimi ve çiftçi"),  # UTF-8 read as cp1252
    ("ÅŸeker pancarÄ± Ä°zmir'de", "şeker pancarı İzmir'de"),
    ("Ã‡Ä°FTÃ‡Ä° ÃœRETÄ°MÄ°", "ÇİFTÇİ ÜRETİMİ"),
    ("Ä±ÅŸÄ±k ve aÄŸaÃ§", "ışık ve ağaç"),
    ("Çiftçiâ€™nin â€œsorusuâ€\x9d", "Çiftçi’nin “sorusu”"),
    ("Þeker pancarý ve buðday, ÝZMÝR ÐÜMÜÞ", "Şeker pancarı ve buğday, İZMİR ĞÜMÜŞ"),  # cp1254 read as Latin-1
    ("Sulama suyu\x92nun kalitesi", "Sulama suyu’nun kalitesi"),
    ("BuÄŸday ekimi ne zaman?", "Buğday ekimi ne zaman?"),  # one sequence: ftfy wants more evidence
    ("ÃœrÃ¼n Ã¶ÄŸÃ¼t", "Ürün öğüt"),  # cp1254/cp1252 C1 byte read as Latin-1
])
def test_mojibake_is_repaired(broken, fixed):
    assert fix_mojibake(broken) == fixed


@pytest.mark.parametrize("correct", [
    "Buğday, çavdar ve yulaf; hâlâ kârlı mı?", "ÇİFTÇİ ÜRETİMİ İÇİN ÖĞÜTLER", "Ağaç → gölge", "naïve café",
    "İzmir'de ışık ve þ harfi (İzlandaca)", "Fiyat: 12,50 € / kg", "Ölçüm: 25 °C, %60 nem",
    "ÇAĞ’IN SONU", "Ç…",
])
def test_correct_text_is_left_alone(correct):
    assert fix_mojibake(correct) == correct


def test_html_tags_entities_and_lookalikes():
    assert strip_html("<p>Toprak&nbsp;pH&#39;ı <b>6-7</b> arası</p><br/>olmalı &amp; kireç &uuml;zerine") == \
        "Toprak\xa0pH'ı 6-7 arası\n\nolmalı & kireç üzerine"
    assert strip_html('<div class="x"><script>var a = 1;</script>Metin<!-- yorum --></div>') == "Metin\n"
    assert strip_html("Fiyat a < b ve c > d, <tarla> etiketi değil") == "Fiyat a < b ve c > d, <tarla> etiketi değil"


def test_control_zero_width_and_whitespace():
    assert remove_control_chars("Buğ\u200bday\u00ad eki\x00mi\ufeff \u202e") == "Buğday ekimi "
    assert normalise_whitespace("  Buğday \t ekimi \u00a0 \r\n\n\n\n ikinci   paragraf\u2028son ") == \
        "Buğday ekimi\n\nikinci paragraf\nson"


def test_every_transform_counts_and_can_be_switched_off():
    rows = [rec(1, "BuÄŸday <b>ekimi</b> ne zaman?", "S\u0327eker\u200b  pancarı, ara: 0532 123 45 67")]
    result = clean_records([dict(r, meta={}) for r in rows], basic())
    assert result.records[0]["instruction"] == "Buğday ekimi ne zaman?"
    assert result.records[0]["output"] == "Şeker pancarı, ara: [TELEFON]"
    stats = stats_dict(result.stats, basic())
    assert stats["fields_changed"] == {"mojibake": 1, "html": 1, "unicode": 1, "control_chars": 1, "whitespace": 1}
    assert stats["pii_masked"] == {"email": 0, "iban": 0, "tckn": 0, "phone": 1}
    off = basic(mojibake=False, html=False, unicode_form="none", control_chars=False, collapse_whitespace=False,
                pii=PiiConfig(enabled=False))
    untouched = clean_records(json.loads(json.dumps(rows)), off)
    assert untouched.records[0]["instruction"] == rows[0]["instruction"]
    assert untouched.records[0]["output"] == rows[0]["output"]


def test_nfc_empty_and_turkish_aware_duplicates_are_rejected_with_source():
    rows = [
        rec(1, "S\u0327eker pancarı", "Yanıt verir."),  # decomposed ş
        rec(2, "ŞEKER PANCARI!", "yanıt verir"),  # same text after Turkish lower-casing, no punctuation
        rec(3, "   ", "Yanıt"),  # empty after cleaning
        rec(4, "Arı", "  Bal \t yapar. "),
        rec(5, "IŞIK", "ılık"), rec(6, "ışık", "ILIK"), rec(7, "isik", "ilik"),  # I/ı and İ/i are letters
    ]
    result = clean_records(rows, basic())
    assert [r["instruction"] for r in result.records] == ["Şeker pancarı", "Arı", "IŞIK", "isik"]
    assert {r["source"]: r["reason"] for r in result.rejects} == {
        "f.jsonl:2": "exact duplicate of f.jsonl:1", "f.jsonl:3": "empty field 'instruction' after cleaning",
        "f.jsonl:6": "exact duplicate of f.jsonl:5"}
    assert accounted(result)
    assert len(clean_records(rows[:2], basic(drop_exact_duplicates=False)).records) == 2


def test_length_filters_in_characters_and_tokens():
    class WordTokenizer:  # stands in for the base tokenizer: one token per word
        def encode_batch(self, texts, add_special_tokens=False):
            return [text.split() for text in texts]

    rows = [rec(1, "A", ""), rec(2, "Kısa", "soru"), rec(3, "Bir iki üç dört", "beş altı yedi"),
            rec(4, "x" * 50, "y")]
    cfg = basic(drop_empty=False, length=LengthConfig(min_chars=3, max_chars=40, min_tokens=3, max_tokens=7))
    result = clean_records(rows, cfg, tokenizer=WordTokenizer())
    assert [r["id"] for r in result.records] == ["3"]
    assert [r["reason"] for r in result.rejects] == ["too short: 1 characters < min_chars 3",
                                                     "too few tokens: 2 < min_tokens 3",
                                                     "too long: 51 characters > max_chars 40"]
    with pytest.raises(HasatError, match="need the base tokenizer"):
        clean_records(rows, cfg)


def test_token_filter_with_a_real_tokenizers_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "buğday": 1}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    cfg = basic(length=LengthConfig(max_tokens=4))
    result = clean_records([rec(1, "buğday ne zaman", "ekilir"), rec(2, "a b c", "d e")], cfg, tokenizer=tokenizer)
    assert [r["id"] for r in result.records] == ["1"] and "5 > max_tokens 4" in result.rejects[0]["reason"]


def test_language_filter_rejects_or_flags():
    rows = [rec(1, "Buğday ekimi için en uygun zaman hangisidir?", "Orta Anadolu'da ekim ayı uygundur."),
            rec(2, "When is the best time to sow winter wheat?", "In central Anatolia, October is best."),
            rec(3, "OK", "Tamam")]  # too short to judge
    cfg = basic(language=LanguageConfig(min_confidence=0.5))
    result = clean_records(rows, cfg)
    assert [r["id"] for r in result.records] == ["1", "3"]
    assert result.rejects[0]["reason"].startswith("language en: p(tr) = 0.0")
    flagged = clean_records(json.loads(json.dumps(rows)), basic(language=LanguageConfig(action="flag")))
    assert len(flagged.records) == 3 and flagged.records[1]["meta"] == {"language": "en", "flags": ["not_tr"]}
    assert stats_dict(flagged.stats, basic())["flagged_language"] == 1


def test_near_duplicates_within_and_across_batches():
    base = "Buğday ekiminden önce toprak analizi yaptırmak ve gübre planı hazırlamak verimi belirgin biçimde artırır"
    rows = [rec(1, "Buğday ekimi", base)] + [rec(i + 2, f"Soru {i}", s) for i, s in enumerate(SENTENCES)]
    rows.append(rec(20, "Buğday ekimi", base.replace("belirgin", "açık")))  # one word changed
    rows.append(rec(21, "Buğday ekimi", "Tamamen farklı bir yanıt: arpa ilkbaharda da ekilebilir."))
    cfg = basic(near_duplicates=NearDuplicatesConfig(threshold=0.6, num_perm=128))
    for batch_size in (512, 2):  # same decisions whether the pair meets in one batch or across batches
        result = clean_records(json.loads(json.dumps(rows)), cfg, batch_size=batch_size)
        assert [r["source"] for r in result.rejects] == ["f.jsonl:20"]
        assert result.rejects[0]["reason"].startswith("near duplicate of f.jsonl:1 (estimated Jaccard 0.")
    strict = basic(near_duplicates=NearDuplicatesConfig(threshold=0.99, num_perm=128))
    assert len(clean_records(json.loads(json.dumps(rows)), strict).records) == len(rows)


def test_sampling_copies_follow_their_original():
    rows = [rec(1, "Soru bir", "Yanıt bir"), dict(rec(1, "Soru bir", "Yanıt bir"), id="1-1", meta={"sample_copy": 1}),
            rec(2, "Soru bir", "Yanıt bir"), dict(rec(2, "Soru bir", "Yanıt bir"), id="2-1", meta={"sample_copy": 1})]
    result = clean_records(rows, basic())
    assert [r["id"] for r in result.records] == ["1", "1-1"]
    assert [r["reason"] for r in result.rejects] == ["exact duplicate of f.jsonl:1", "sampling copy of a rejected row"]


def labelled(counts: dict) -> list[dict]:
    rows, i = [], 0
    for label, n in counts.items():
        for k in range(n):
            i += 1
            rows.append({"id": str(i), "source": f"h.jsonl:{i}", "text": f"{label} haberi numara {k} {i}",
                         "label": label, "meta": {}})
    return rows


def test_class_balance_under_over_and_weights():
    counts = {"tarim": 6, "spor": 3, "magazin": 2}
    under = clean_records(labelled(counts), basic(balance=BalanceConfig(method="undersample", seed=1)))
    assert under.stats.labels_after == {"tarim": 2, "spor": 2, "magazin": 2} and accounted(under)
    assert sum(r["reason"].startswith("undersampled: class 'tarim' has 6 rows") for r in under.rejects) == 4
    again = clean_records(labelled(counts), basic(balance=BalanceConfig(method="undersample", seed=1)))
    assert [r["id"] for r in again.records] == [r["id"] for r in under.records]
    over = clean_records(labelled(counts), basic(balance=BalanceConfig(method="oversample")))
    assert over.stats.labels_after == {"tarim": 6, "spor": 6, "magazin": 6} and over.stats.added == 7
    assert accounted(over) and len({r["id"] for r in over.records}) == 18
    weights = clean_records(labelled(counts), basic(balance=BalanceConfig(method="class_weights")))
    assert len(weights.records) == 11 and weights.stats.weights == class_weights(counts)
    assert class_weights({"a": 1, "b": 3}) == {"a": 2.0, "b": 0.666667}
    assert balance_plan(["a", "b", "b"], "none", 0) == (set(), {})
    with pytest.raises(HasatError, match="needs labelled"):
        clean_records([rec(1, "Soru", "Yanıt")], basic(balance=BalanceConfig(method="undersample")))


def test_empty_label_is_rejected():
    rows = labelled({"spor": 1, "": 1})
    result = clean_records(rows, basic())
    assert result.rejects[0]["reason"] == "empty field 'label' after cleaning"


def test_clean_file_streams_and_workers_give_the_same_result(tmp_path):
    rows = []
    for i in range(600):
        base = i % 400  # rows 400.. repeat earlier ones exactly; `Kayıt` numbers make near-duplicates
        text = f"{SENTENCES[base % len(SENTENCES)]} Kayıt {base // 7} için not: {'ağaç ' * (base % 5)}"
        rows.append(rec(i, f"Soru {base % 50}", text))
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    cfg = CleanConfig(language=LanguageConfig(min_chars=20), length=LengthConfig(max_tokens=None))
    outputs = []
    for workers in (1, 2):
        out, rejects = tmp_path / f"out{workers}.jsonl", tmp_path / f"rej{workers}.jsonl"
        stats = clean_file(tmp_path / "in.jsonl", out, rejects, cfg, workers=workers)
        assert stats.rows_in == 600 == stats.kept + stats.rejected
        assert len(read_rejects(rejects)) == stats.rejected and sum(1 for _ in out.open()) == stats.kept
        outputs.append((out.read_text(), rejects.read_text(), dict(stats.reasons)))
    assert outputs[0] == outputs[1]
    assert outputs[0][2].get("exact_duplicate") and outputs[0][2].get("near_duplicate")


def test_clean_file_with_balance_spills_and_reads_back(tmp_path):
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in labelled({"a": 4, "b": 2})))
    cfg = basic(balance=BalanceConfig(method="oversample"))
    stats = clean_file(tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "rej.jsonl", cfg)
    assert sum(1 for _ in (tmp_path / "out.jsonl").open()) == 8 and stats.added == 2
    assert not (tmp_path / "kept-before-balance.jsonl").exists()


def test_transform_fast_paths_equal_the_plain_regexes():
    """The `in` / isprintable() shortcuts in front of the regexes never change a result."""
    import html
    import random

    from pipeline.data.clean import text as cleaning

    def html_reference(text):
        if not cleaning._HTML_HINT.search(text):
            return text
        text = cleaning._HTML_TAG.sub("", cleaning._HTML_BREAK.sub("\n", cleaning._HTML_BLOCK.sub("", text)))
        return html.unescape(text) if "&" in text else text

    def whitespace_reference(text):
        text = cleaning._LINE_BREAKS_RE.sub("\n", text)
        lines = [cleaning._INLINE_SPACE_RE.sub(" ", line).strip() for line in text.split("\n")]
        return cleaning._BLANK_LINES_RE.sub("\n\n", "\n".join(lines)).strip()

    tricky = ["", " ", "düz metin", "<p>Buğday</p>&nbsp;<br/>", "a < b > c", "x &amp y", "&#287;ğ", "Tom & Jerry",
              "ara\u00a0boşluk", "sıfır\u200bgenişlik", "yumuşak\u00adtire", "\ufeffBOM", "tab\there", "iki  boşluk",
              " baş", "son ", "satır\r\nsonu\u2028ve\u2029", "\x00\x07\x1b\x7f\x85\x9f", "\u202ebidi\u202c",
              "\u3000ideographic", "\ud800 yalnız vekil", "ÄŸ <b>Ş</b>\n\n\n\nparagraf"]
    rng = random.Random(2)
    alphabet = [*"<>&;#/!ab pçğış\n\t\r", "\u00a0", "\u200b", "\u00ad", "\x00", "\x85", "\u2028", "\u3000",
                "&nbsp;", "<br>", "</p>", "&#x11f;", "  "]
    tricky += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 25))) for _ in range(5000)]
    for text in tricky:
        assert cleaning.strip_html(text) == html_reference(text), repr(text)
        assert cleaning.remove_control_chars(text) == cleaning._CONTROL.sub("", text), repr(text)
        assert cleaning.normalise_whitespace(text) == whitespace_reference(text), repr(text)
