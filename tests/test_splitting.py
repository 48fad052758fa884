import pytest

from pipeline.errors import HasatError
from pipeline.data.splitting import leaked_prompts, split_records


def rows(n, dup_every=0):
    out = []
    for i in range(n):
        key = i - 1 if dup_every and i % dup_every == 0 and i else i
        out.append({"source": f"f:{i}", "instruction": f"Soru {key}", "input": "", "output": f"Yanıt {i}"})
    return out


def test_split_is_seeded_grouped_and_complete():
    data = rows(100, dup_every=5)  # same prompt, different answers
    first = split_records(data, 0.1, 0.1, seed=7)
    again = split_records(data, 0.1, 0.1, seed=7)
    other = split_records(data, 0.1, 0.1, seed=8)
    assert first == again and first != other
    assert sum(len(v) for v in first.values()) == 100
    assert leaked_prompts(first) == 0


def test_case_variants_of_a_prompt_stay_together():
    data = rows(30) + [{"source": "f:x", "instruction": "SORU 3", "input": "", "output": "başka"}]
    splits = split_records(data, 0.2, 0.2, seed=1)
    assert leaked_prompts(splits) == 0


def test_too_few_prompts_is_a_clear_error():
    with pytest.raises(HasatError, match="need at least 3"):
        split_records(rows(2), 0.1, 0.1, seed=1)


def labelled(counts: dict[str, int]):
    return [{"source": f"f:{label}{i}", "text": f"{label} haberi {i}", "label": label}
            for label, n in counts.items() for i in range(n)]


def test_stratified_split_keeps_class_shares():
    from pipeline.data.splitting import label_counts

    data = labelled({"tarim": 100, "spor": 50, "magazin": 20})
    splits = split_records(data, 0.1, 0.2, seed=3, stratify=True)
    assert label_counts(splits["test"]) == {"magazin": 4, "spor": 10, "tarim": 20}
    assert label_counts(splits["val"]) == {"magazin": 2, "spor": 5, "tarim": 10}
    assert leaked_prompts(splits) == 0


def test_sizes_as_counts():
    splits = split_records(rows(50), 5, 7, seed=1)
    assert (len(splits["val"]), len(splits["test"]), len(splits["train"])) == (5, 7, 38)


def test_a_class_too_small_for_a_stratified_split_is_named():
    with pytest.raises(HasatError, match="class 'magazin' has 2 examples"):
        split_records(labelled({"tarim": 40, "magazin": 2}), 0.1, 0.1, seed=1, stratify=True)
