import numpy as np
from datasketch import MinHash

from pipeline.data.clean.minhash import MinHasher, NearDuplicateIndex, _SortedRuns, exact_key, lsh_bands


def test_signatures_equal_datasketch():
    hasher = MinHasher(num_perm=64, ngram=3)
    texts = ["Buğday ekimi için toprak analizi şart", "Arı", ""]
    shingles = [hasher.shingles(t) for t in texts]
    ours = hasher.signatures(shingles)
    for row, values in zip(ours, shingles):
        reference = MinHash(num_perm=64, seed=1, hashfunc=lambda v: v)
        reference.update_batch(values)
        assert np.array_equal(row, reference.hashvalues)
    assert len(shingles[1]) == 1 and shingles[1] == hasher.shingles("ARI") and shingles[2] == []


def test_batch_shingles_equal_one_text_at_a_time():
    hasher = MinHasher(ngram=3)
    texts = ["bir iki üç dört beş", "", "tek", "iki kelime", "ğüşiöç ığdır " * 30, "a b c"]
    flat, counts = hasher.shingle_batch(texts)
    assert counts.tolist() == [3, 0, 1, 2, 58, 1]
    singles = [hasher.shingle_batch([t])[0].tolist() for t in texts]
    assert flat.tolist() == [h for one in singles for h in one]
    assert singles[0][:1] != singles[5] and len(set(singles[4])) == 2  # repeated text: two distinct trigrams


def test_shingles_are_turkish_normalised():
    hasher = MinHasher(ngram=2)
    assert hasher.shingles("IĞDIR İLİ, Iğdır ili!") == hasher.shingles("ığdır ili ığdır ili")
    assert exact_key("İZMİR'de  ışık.") == exact_key("izmir de ışık") != exact_key("izmir de isik")


def test_sorted_runs_find_every_row_under_a_key():
    runs = _SortedRuns()
    for start in range(0, 100, 10):
        keys = np.arange(start, start + 10, dtype=np.uint64) % np.uint64(7)
        runs.add(keys, np.arange(start, start + 10, dtype=np.int64))
    assert len(runs.runs) < 10  # merged as they grow
    found = runs.lookup(np.array([3, 99], dtype=np.uint64))
    assert sorted(found[0]) == [i for i in range(100) if i % 7 == 3] and 1 not in found


def test_index_finds_a_near_duplicate_and_not_a_stranger():
    hasher = MinHasher(num_perm=128, ngram=3)
    base = " ".join(f"kelime{i}" for i in range(40))
    near = base.replace("kelime39", "başka")
    other = " ".join(f"farklı{i}" for i in range(40))
    signatures = hasher.signatures([hasher.shingles(t) for t in (base, near, other)])
    index = NearDuplicateIndex(0.8, 128)
    assert (index.b, index.r) == lsh_bands(0.8, 128)
    keys = index.band_keys(signatures)
    index.add(signatures[:1], keys[:1], ["f.jsonl:1"])
    candidates = index.candidates(keys[1:])
    assert candidates[0] == [0] and index.best_match(signatures[1], candidates[0])[1] > 0.85
    assert index.best_match(signatures[2], candidates[1]) is None and len(index) == 1


def test_sorted_runs_lookup_matches_a_plain_dict():
    rng = np.random.default_rng(3)
    runs, plain = _SortedRuns(), {}
    row = 0
    for size in (50, 20, 300, 7, 1):
        keys = rng.integers(0, 200, size=size).astype(np.uint64)
        runs.add(keys, np.arange(row, row + size, dtype=np.int64))
        for key in keys.tolist():
            plain.setdefault(key, []).append(row)
            row += 1
    queries = rng.integers(0, 260, size=500).astype(np.uint64)
    found = runs.lookup(queries)
    for position, key in enumerate(queries.tolist()):
        assert sorted(found.get(position, [])) == plain.get(key, []), key
    assert runs.lookup(np.zeros(0, dtype=np.uint64)) == {} and _SortedRuns().lookup(queries) == {}


def test_index_add_spans_signature_chunks():
    index = NearDuplicateIndex(0.8, 16, bands=(4, 4))
    index._chunk_rows = 8
    signatures = np.arange(21 * 16, dtype=np.uint32).reshape(21, 16)
    keys = index.band_keys(signatures)
    assert index.add(signatures[:5], keys[:5], ["a"] * 5) == list(range(5))
    assert index.add(signatures[5:], keys[5:], ["b"] * 16) == list(range(5, 21))
    assert all(index.similarity(signatures[row], row) == 1.0 for row in range(21)) and len(index) == 21


def test_shingles_of_long_and_odd_words_equal_the_per_byte_formula():
    """The word hash summed position by position (and the prefix-sum tail past position 63) equals
    the definition: fmix64(sum of (byte + 1) * P**min(position, 63))."""
    import random

    from pipeline.data.clean.minhash import _BYTE_POWERS, _fmix64, _word_hashes

    rng = random.Random(5)
    alphabet = "abcçğıöşü019_日🌾"
    words = ["".join(rng.choice(alphabet) for _ in range(length)) for length in (1, 2, 62, 63, 64, 65, 130, 700)]
    words += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 90))) for _ in range(200)]
    text = " ".join(words[:100]) + "\n\n" + "  ".join(words[100:]) + " "
    data = np.frombuffer(text.encode(), dtype=np.uint8)
    hashes, starts = _word_hashes(data)
    expected = []
    for word in words:
        total = 0
        for position, byte in enumerate(word.encode()):
            total = (total + (byte + 1) * int(_BYTE_POWERS[min(position, 63)])) % (1 << 64)
        expected.append(total)
    assert hashes.tolist() == _fmix64(np.array(expected, dtype=np.uint64)).tolist()
    encoded = text.encode()
    assert [encoded[s:s + len(w.encode())] for s, w in zip(starts.tolist(), words)] == [w.encode() for w in words]


def templated_rows(n: int) -> list[dict]:
    """'Soru {i}' / 'Cevap {i}' rows of one long template with a few words changed: most pairs share LSH
    buckets (Jaccard ~0.6) without being near-duplicates, the shape that made the search quadratic."""
    import random

    rng = random.Random(11)
    places = "Konya Ege Trakya Harran Iğdır Bursa Ordu Rize Muş Aydın Samsun Kars".split()
    crops = "buğday arpa mısır pamuk fındık zeytin çay elma üzüm nohut kiraz biber".split()
    rows = []
    for i in range(n):
        question = (f"Soru {i}: Aşağıdaki tarım sorusunu bir ziraat mühendisi gibi kısa ve açık biçimde "
                    f"yanıtlayın: {rng.choice(places)} bölgesindeki {rng.choice(crops)} tarlası için sulama "
                    "nasıl planlanmalı?")
        answer = (f"Cevap {i}: Uzmanlara göre önce toprak analizi yaptırılmalı ve yaprak rengi izlenmeli, "
                  f"gübre dozu dekara {rng.randint(2, 90)} kilogramı geçmemeli; hasat serin saatlerde "
                  "yapılmalıdır.")
        rows.append({"id": str(i), "source": f"t.jsonl:{i + 1}", "instruction": question, "input": "",
                     "output": answer, "meta": {}})
    return rows


def test_templated_rows_cost_linear_work_and_near_duplicates_are_still_found():
    from pipeline.config import CleanConfig, LanguageConfig, LengthConfig, NearDuplicatesConfig
    from pipeline.data.clean import clean_records, stats_dict

    cap = 16
    cfg = CleanConfig(language=LanguageConfig(enabled=False), length=LengthConfig(max_tokens=None),
                      near_duplicates=NearDuplicatesConfig(bucket_cap=cap))
    rows = templated_rows(1600)
    bands = lsh_bands(0.8, 64)[0]
    comparisons = {}
    for n in (800, 1600):
        result = clean_records([dict(r) for r in rows[:n]], cfg, batch_size=256)
        comparisons[n] = stats_dict(result.stats, cfg)["near_duplicate_comparisons"]
        assert comparisons[n] <= n * bands * cap  # each row is verified against at most bands x cap others
    # bounded buckets: twice the rows, about twice the work (unbounded it is four times: every row
    # against all earlier rows sharing a template bucket)
    assert comparisons[1600] < 2.5 * comparisons[800]
    early, late = rows[2], rows[1400]
    copies = [dict(r, id=f"copy{k}", source=f"copies.jsonl:{k}",
                   output=r["output"].replace("hasat", "toplama")) for k, r in enumerate((early, late))]
    result = clean_records([dict(r) for r in rows] + copies, cfg, batch_size=256)
    found = {r["source"]: r["reason"] for r in result.rejects}
    assert found["copies.jsonl:0"].startswith("near duplicate of t.jsonl:3 ")
    assert found["copies.jsonl:1"].startswith("near duplicate of t.jsonl:1401 ")


def test_a_full_bucket_stores_no_more_rows():
    index = NearDuplicateIndex(0.8, 16, bands=(4, 4), bucket_cap=3)
    signatures = np.zeros((10, 16), dtype=np.uint32)  # all rows in the same four buckets
    signatures[:, 12:] = np.arange(10, dtype=np.uint32)[:, None]  # except the last band: one bucket each
    keys = index.band_keys(signatures)
    for row in range(10):
        index.add(signatures[row:row + 1], keys[row:row + 1], [f"r{row}"])
    candidates, sizes = index.lookup(keys[9:])
    assert sizes.tolist() == [[3, 3, 3, 1]] and candidates == [[0, 1, 2, 9]]
