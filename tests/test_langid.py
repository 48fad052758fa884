from pipeline.data.langid import LanguageDetector

TEXTS = ["Buğday ekiminde toprak analizi şarttır.", "BUĞDAY EKİMİ NE ZAMAN YAPILIR?",
         "When should winter wheat be sown?", "Bu il\r\nçok\nverimli", "", "\x00\x0b\x0c 123", "a" * 500]


def test_direct_binding_and_cache_give_the_wrappers_numbers():
    fast = LanguageDetector()
    plain = LanguageDetector(cache_size=0)
    plain._binding = None  # the fasttext wrapper's predict, no cache
    for text in TEXTS * 2:
        assert fast.scores(text) == plain.scores(text), repr(text)
        assert fast.judge(text, "tr") == plain.judge(text, "tr")
        scores = plain.scores(text)  # the definition: best of the top 3, and p(expected) among them
        for expected in ("tr", "en", "az"):
            best = max(scores, key=scores.get) if scores else "und"
            assert fast.judge(text, expected) == (best, scores.get(expected, 0.0))
    assert fast.judge(TEXTS[1], "tr")[0] == "tr" and fast.judge(TEXTS[2], "tr")[0] == "en"


def test_cache_stays_bounded():
    detector = LanguageDetector(cache_size=3)
    for i in range(10):
        detector.judge(f"Tarla {i} dekar, sulama aralığı.", "tr")
    assert len(detector._cache) <= 3
