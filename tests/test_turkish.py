from pipeline.data.turkish import normalise_for_match, tr_lower, tr_upper, words


def test_dotted_and_dotless_i():
    assert tr_lower("IŞIK") == "ışık"
    assert tr_lower("İZMİR") == "izmir"
    assert len(tr_lower("İ")) == 1  # str.lower() gives two code points
    assert tr_upper("istanbul ılık") == "İSTANBUL ILIK"


def test_words_keep_turkish_letters_and_split_apostrophe_suffixes():
    assert words("Buğday, İzmir'de çok üretilir.") == ["buğday", "izmir", "de", "çok", "üretilir"]


def test_decomposed_input_matches_composed():
    decomposed = "s\u0327eker"  # ş as s + combining cedilla
    assert normalise_for_match(decomposed) == normalise_for_match("Şeker")


def test_normalise_for_match_fast_path_equals_the_regex():
    """The bytes fast path must give exactly `\\W+` -> " " on the lowered text, whatever comes in."""
    import random
    import re

    def reference(text: str) -> str:
        return re.sub(r"\W+", " ", tr_lower(text)).strip()

    tricky = ["", " ", "İZMİR'de  ışık.", "Buğday—arpa…", "a_b__c", "x\u200by", "«Şeker» pancarı",
              "fiyat: 1.250,00 ₺", "s\u0327eker", "I\u0307", "½ dekar", "٣ gün", "Ⅻ", "ａｂｃ", "\ud800x",
              "tab\tnew\nline\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\u2028end", "e-posta: ciftci@ornek.com.tr",
              "ÇÖĞÜŞİ çöğüşı", "naïve café", "\u00a0nbsp\u00a0", "x²", "日本語テキスト", "🌾 hasat 🌾"]
    rng = random.Random(0)
    alphabet = [chr(c) for c in [*range(0x250), 0x130, 0x131, 0x307, 0x327, 0x2013, 0x2026, 0x2019, 0x200b,
                                 0x3000, 0x660, 0x2160, 0xff10, 0x1F33E, 0x10000]]
    tricky += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(3000)]
    for text in tricky:
        assert normalise_for_match(text) == reference(text), repr(text)
