"""Generation metrics against hand-computed values on Turkish strings."""

import math

import numpy as np
import pytest
from sacrebleu.metrics import BLEU, CHRF

from pipeline.eval.metrics import (corpus_score, exact_match, generation_metrics, item_scores, perplexity_statistics,
                              repeats, repetition, rouge, rouge_l, text_statistics, token_f1)

PREDS = ["Buğday ekimi eylülde yapılır.", "Toprak analizi yapılmalı", "xyz", "Arılar çiçekten nektar toplar ve bal yapar",
         "İzmir'de pamuk yetişir."]
REFS = ["Buğday ekimi ekimde yapılır.", "Toprak analizi önemlidir", "Fındık Karadeniz'de yetişir.", "Arılar nektar toplar",
        "Pamuk İzmir'de yetiştirilir."]


def test_rouge_l_keeps_turkish_letters():
    # rouge_score's default tokenizer turns both into "bu day", "i i" ...: a false 100
    assert rouge_l(["Buğday"], ["Buçday"]) == [0.0]
    assert rouge_l(["IŞIK ve İzmir"], ["ışık ve izmir"]) == [100.0]


def test_rouge_l_hand_computed():
    # LCS of [toprak, analizi, yapılmalı] and [toprak, analizi, önemlidir, yapılmalı] = 3
    # P = 3/3, R = 3/4, F = 2PR/(P+R) = 6/7
    assert rouge_l(["Toprak analizi yapılmalı"], ["Toprak analizi önemlidir, yapılmalı"])[0] == pytest.approx(600 / 7)


def test_rouge_1_2_l_split_apostrophe_suffixes():
    # words: [izmir, de, hava, sıcak] vs [izmir, de, hava, çok, sıcak]
    # ROUGE-1: P 4/4, R 4/5 -> F 8/9.  ROUGE-2: bigrams 3 vs 4, 2 shared -> P 2/3, R 1/2 -> F 4/7.
    # ROUGE-L: LCS izmir de hava sıcak = 4 -> same as ROUGE-1.
    scores = rouge(["İzmir'de hava sıcak"], ["izmir'de hava çok sıcak"])
    assert scores["rouge_1"][0] == pytest.approx(800 / 9)
    assert scores["rouge_2"][0] == pytest.approx(400 / 7)
    assert scores["rouge_l"][0] == pytest.approx(800 / 9)


def test_exact_match_is_turkish_case_and_punctuation_insensitive():
    assert exact_match(["İZMİR'DE."], ["izmir'de"]) == [100.0]
    assert exact_match(["Izmir"], ["izmir"]) == [0.0]  # I lower-cases to ı in Turkish
    assert exact_match(["ISPARTA"], ["ısparta"]) == [100.0]


def test_token_f1_hand_computed():
    # [izmir, de, hava, sıcak] vs [izmir, de, hava, çok, sıcak]: 4 shared, P = 1, R = 4/5 -> F1 = 8/9
    assert token_f1("İzmir'de hava sıcak", "izmir'de hava çok sıcak") == pytest.approx(800 / 9)
    # repeated words count once per occurrence: [bal, bal, bal] vs [bal, arı]: 1 shared, P 1/3, R 1/2 -> 2/5
    assert token_f1("bal bal bal", "bal arı") == pytest.approx(40.0)
    assert token_f1("IŞIK", "ışık") == 100.0 and token_f1("Işık", "işık") == 0.0
    assert token_f1("", "") == 100.0 and token_f1("", "bal") == 0.0 and token_f1("...", "bal") == 0.0


def test_chrf_hand_computed_on_dotless_i():
    # "ılık" vs "ışık" (character n-grams, beta = 2): 1-grams ı ı l k vs ı ı ş k -> 3 of 4 match;
    # 2-grams ıl lı ık vs ış şı ık -> 1 of 3; 3- and 4-grams: none; 5-, 6-grams do not exist.
    # sacrebleu averages P and R over the 4 effective orders: P = R = (3/4 + 1/3) / 4 -> F = the same.
    stats, _ = text_statistics(["ılık"], ["ışık"])
    assert corpus_score("chrf", stats["chrf"]) == pytest.approx(100 * (3 / 4 + 1 / 3) / 4)


def test_bleu_hand_computed_brevity_penalty():
    # 13a keeps "Anadolu'da" one token; hyp = the first 5 of 7 reference tokens: all precisions 1,
    # BLEU = brevity penalty = exp(1 - 7/5)
    stats, _ = text_statistics(["Buğday ekimi İç Anadolu'da eylül"], ["Buğday ekimi İç Anadolu'da eylül sonunda başlar"])
    assert corpus_score("bleu", stats["bleu"]) == pytest.approx(100 * math.exp(1 - 7 / 5))


def test_sufficient_statistics_equal_sacrebleu_corpus_scores():
    stats, sigs = text_statistics(PREDS, REFS)
    assert corpus_score("chrf", stats["chrf"]) == pytest.approx(CHRF().corpus_score(PREDS, [REFS]).score)
    assert corpus_score("chrf_pp", stats["chrf_pp"]) == pytest.approx(CHRF(word_order=2).corpus_score(PREDS, [REFS]).score)
    assert corpus_score("bleu", stats["bleu"]) == pytest.approx(BLEU().corpus_score(PREDS, [REFS]).score)
    sentence = [CHRF().sentence_score(p, [r]).score for p, r in zip(PREDS, REFS)]
    assert item_scores("chrf", stats["chrf"]) == pytest.approx(sentence)
    assert sigs["chrf"].startswith("nrefs:1") and "nw:0" in sigs["chrf"] and "nw:2" in sigs["chrf_pp"]
    assert sigs["bleu"].startswith("nrefs:1") and "tok:13a" in sigs["bleu"]


def test_perplexity_is_exp_of_mean_token_nll():
    stats = perplexity_statistics([(2.0, 2), (4.0, 2)])
    assert corpus_score("perplexity", stats) == pytest.approx(math.exp(6 / 4))
    assert item_scores("perplexity", stats) == pytest.approx([math.e, math.e ** 2])


def test_corpus_metrics_identical_and_disjoint():
    same = generation_metrics(["Fındık Karadeniz'de yetişir."], ["Fındık Karadeniz'de yetişir."])
    assert same["chrf"] == 100.0 and same["bleu"] == pytest.approx(100.0) and same["exact_match"] == 100.0
    assert same["token_f1"] == 100.0 and same["rouge_2"] == 100.0 and same["chrf_pp"] == 100.0
    assert same["signatures"]["chrf"].startswith("nrefs:1")
    apart = generation_metrics(["xyz"], ["Fındık Karadeniz'de yetişir."])
    assert apart["chrf"] < 5 and apart["rouge_l"] == 0.0 and apart["token_f1"] == 0.0


def test_mean_metrics_average_over_items():
    stats, _ = text_statistics(["bal", "arı"], ["bal", "kovan"])
    assert corpus_score("exact_match", stats["exact_match"]) == 50.0
    assert np.allclose(stats["token_f1"], [[100, 1], [0, 1]])


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError):
        generation_metrics(["a"], [])


def test_repetition_flags_a_word_trigram_three_times():
    loop = "Arıcılık ve yapılmalıdır. Arıcılık ve yapılmalıdır. Arıcılık ve yapılmalıdır."
    assert repeats(loop)
    assert repeats("yüzde düşük ve yüzde düşük ve YÜZDE DÜŞÜK VE")  # Turkish-aware case folding
    assert not repeats("Arıcılık ve yapılmalıdır. Arıcılık ve yapılmalıdır.")  # twice is not a loop
    assert not repeats("ve ve ve")  # a single word repeated is not a 3-gram occurring 3 times
    assert not repeats("Buğday eylülde ekilir, arpa ekimde ekilir, mısır nisanda ekilir.")
    assert repetition([loop, "Kısa ve net bir yanıt.", loop, ""]) == [100.0, 0.0, 100.0, 0.0]


def test_repetition_is_a_lower_is_better_share_with_statistics():
    stats, _ = text_statistics(["a b c a b c a b c", "tek cevap"], ["x", "y"])
    assert corpus_score("repetition", stats["repetition"]) == 50.0


def test_the_known_word_share_counts_answer_words_seen_in_training():
    from pipeline.eval.metrics import known_share, known_statistics, vocabulary

    known = vocabulary([{"prompt_text": "Buğday ne zaman ekilir?", "reference": "BUĞDAY ekimde ekilir."},
                        {"instruction": "Arı", "input": "", "output": "Kovan kışın korunur."}])
    assert {"buğday", "ekilir", "ekimde", "arı", "kovan"} <= known  # Turkish-aware lower case
    stats = known_statistics(["Buğday ekimde ekilir.", "Buğdaylık ekilçük zamanlık kovan.", ""], known)
    assert stats.tolist() == [[3, 3], [1, 4], [0, 0]]
    assert corpus_score("known_words", stats) == pytest.approx(100 * 4 / 7)  # pooled over the words
    assert known_share(["Buğday ekimde ekilir."], known) == 100.0 and known_share([""], known) == 100.0
