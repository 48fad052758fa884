from pathlib import Path

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
        scores = plain._predict(plain._sample(text), -1)  # the definition: every language's probability
        for expected in ("tr", "en", "az"):
            best = max(scores, key=scores.get) if scores else "und"
            assert fast.judge(text, expected) == (best, scores.get(best, 0.0), scores.get(expected, 0.0))
    assert fast.judge(TEXTS[1], "tr")[0] == "tr" and fast.judge(TEXTS[2], "tr")[0] == "en"


def test_cache_stays_bounded():
    detector = LanguageDetector(cache_size=3)
    for i in range(10):
        detector.judge(f"Tarla {i} dekar, sulama aralığı.", "tr")
    assert len(detector._cache) <= 3


def informal_turkish() -> list[str]:
    path = Path(__file__).parent / "data" / "informal_tr_no_diacritics.txt"
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


OTHER_LANGUAGES = [
    "When should winter wheat be sown in central Anatolia and how deep?",
    "The delivery was late and the package arrived damaged, very disappointing.",
    "ok thanks, see you tomorrow at the farm",
    "Das Wetter ist heute schön und wir gehen auf den Markt.",
    "Der Weizen sollte im Herbst gesät werden, wenn der Boden feucht ist.",
    "Il fait beau aujourd'hui, nous allons au marché avec les enfants.",
    "El trigo de invierno se siembra en otoño cuando llueve.",
    "Questo film è stato davvero noioso, non lo consiglio a nessuno.",
    "Azərbaycan dilində yazılmış bir cümlədir bu, türkcə deyil.",
    "Пшеницу сеют осенью, когда почва достаточно влажная.",
]


def test_informal_turkish_without_diacritics_is_kept_and_other_languages_are_rejected():
    """False rejects on ~40 informal Turkish sentences typed without ş/ğ/ı/ö/ü/ç (reviews, farmers'
    questions): the old rule (reject when p(tr) < 0.5) rejected 8 of them; the defaults reject none and
    mark the unsure ones, while every clearly foreign row is still rejected."""
    from pipeline.config import CleanConfig, LengthConfig, NearDuplicatesConfig
    from pipeline.data.clean import clean_records, stats_dict

    turkish = informal_turkish()
    assert len(turkish) >= 40
    rows = [{"id": str(i), "source": f"r.jsonl:{i + 1}", "text": text, "label": "x", "meta": {}}
            for i, text in enumerate(turkish + OTHER_LANGUAGES)]
    cfg = CleanConfig(length=LengthConfig(max_tokens=None), near_duplicates=NearDuplicatesConfig(enabled=False))
    result = clean_records(rows, cfg)
    rejected = {r["raw"]["text"]: r["reason"] for r in result.rejects}
    false_rejects = [t for t in turkish if t in rejected]
    assert not false_rejects, false_rejects
    assert sorted(rejected) == sorted(OTHER_LANGUAGES), set(OTHER_LANGUAGES) - set(rejected)
    stats = stats_dict(result.stats, cfg)
    uncertain = [r for r in result.records if "uncertain_tr" in r["meta"].get("flags", [])]
    assert stats["uncertain_language"] == len(uncertain) >= 5  # kept, counted and marked
    only_low_tr = CleanConfig(length=LengthConfig(max_tokens=None), near_duplicates=NearDuplicatesConfig(enabled=False))
    only_low_tr.language.reject_other_confidence = 1.01  # never: p(tr) < reject_below alone still rejects them
    low = clean_records([dict(r, meta={}) for r in rows[len(turkish):]], only_low_tr)
    assert len(low.rejects) == len(OTHER_LANGUAGES) and "< reject_below 0.01" in low.rejects[0]["reason"]
    old_rule = CleanConfig(length=LengthConfig(max_tokens=None), near_duplicates=NearDuplicatesConfig(enabled=False))
    old_rule.language.reject_other_confidence, old_rule.language.reject_below = 0.0, 0.5
    old = clean_records([dict(r, meta={}) for r in rows[:len(turkish)]], old_rule)
    assert len(old.rejects) >= 5  # what the same rows lost before: the test can tell the rules apart
