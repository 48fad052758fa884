"""The causal-LM classifier library and its scikit-learn baselines (tiny random model)."""

import pytest
import torch

from pipeline.eval.classification import baselines, predict
from pipeline.tasks.classification.train import check_labels, encode_texts, label_list
from pipeline.train.classifier import class_weights, sequence_classifier, weighted_loss
from pipeline.errors import HasatError

ROWS = [{"source": f"h:{i}", "text": text, "label": label} for i, (text, label) in enumerate([
    ("Konya'da buğday hasadı başladı.", "tarim"), ("Fındık rekoltesi beklentinin üzerinde.", "tarim"),
    ("Çiftçiler damla sulamaya geçiyor.", "tarim"), ("Takım deplasmanda 2-1 kazandı.", "spor"),
    ("Milli voleybolcular finale yükseldi.", "spor"), ("Merkez bankası faizi sabit bıraktı.", "ekonomi")])]


def test_labels_are_sorted_or_configured_and_unknown_ones_are_named():
    assert label_list(ROWS) == ["ekonomi", "spor", "tarim"]
    assert label_list(ROWS, ["tarim", "spor", "ekonomi"]) == ["tarim", "spor", "ekonomi"]
    with pytest.raises(HasatError, match=r"h:9: unknown label 'magazin' in the test split \(known: spor, tarim\)"):
        check_labels([{"source": "h:9", "text": "x", "label": "magazin"}], ["spor", "tarim"], "the test split")


def test_class_weights_are_balanced_inverse_frequency():
    weights = class_weights(ROWS, ["ekonomi", "spor", "tarim"])
    assert weights == pytest.approx([6 / (3 * 1), 6 / (3 * 2), 6 / (3 * 3)])
    with pytest.raises(HasatError, match="no example of class"):
        class_weights(ROWS, ["ekonomi", "magazin"])


def test_weighted_loss_matches_torch():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0])
    out = type("Out", (), {"logits": logits})()
    expected = torch.nn.functional.cross_entropy(logits, labels, weight=torch.tensor([3.0, 1.0]))
    assert weighted_loss([3.0, 1.0])(out, labels).item() == pytest.approx(expected.item())


def test_head_pools_the_last_real_token_whatever_the_padding(tiny_model_dir):
    labels = ["ekonomi", "spor", "tarim"]
    tokenizer, model = sequence_classifier(tiny_model_dir, labels)
    assert model.config.pad_token_id == tokenizer.pad_token_id == tokenizer.eos_token_id
    assert model.config.id2label == {0: "ekonomi", 1: "spor", 2: "tarim"}
    encoded, truncated = encode_texts(ROWS, tokenizer, labels, max_seq_len=6)
    assert truncated > 0 and all(len(r["input_ids"]) <= 6 for r in encoded)
    encoded, _ = encode_texts(ROWS, tokenizer, labels, max_seq_len=64)
    one_by_one = [predict(model, tokenizer, [row], batch_size=1)[0] for row in encoded]
    assert predict(model, tokenizer, encoded, batch_size=6) == one_by_one  # padding does not change the answer


def test_baselines_predict_known_labels():
    predicted = baselines(ROWS * 3, ROWS)
    assert predicted["majority"] == ["tarim"] * len(ROWS)
    assert set(predicted["tfidf_char_lr"]) <= {"tarim", "spor", "ekonomi"}
    assert predicted["tfidf_char_lr"] == [r["label"] for r in ROWS]  # it has seen these texts
