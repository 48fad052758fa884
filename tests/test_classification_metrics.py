import json

import numpy as np
import pytest

from pipeline.eval.classification_metrics import classification_metrics, confusion, confusion_rows
from pipeline.eval.plots import confusion_png

TRUE = ["tarım", "tarım", "tarım", "ekonomi", "ekonomi", "spor"]
PRED = ["tarım", "tarım", "ekonomi", "ekonomi", "tarım", "spor"]


def test_hand_computed_scores():
    m = classification_metrics(TRUE, PRED)
    # tarım: TP 2, FP 1, FN 1 -> P = R = F1 = 2/3; ekonomi: TP 1, FP 1, FN 1 -> 1/2; spor: 1
    assert m["accuracy"] == pytest.approx(400 / 6)
    assert m["per_class"]["tarım"] == pytest.approx({"precision": 200 / 3, "recall": 200 / 3, "f1": 200 / 3, "support": 3})
    assert m["per_class"]["ekonomi"]["f1"] == pytest.approx(50.0)
    assert m["per_class"]["spor"]["f1"] == pytest.approx(100.0)
    assert m["macro_f1"] == pytest.approx(100 * (2 / 3 + 1 / 2 + 1) / 3)
    assert m["weighted_f1"] == pytest.approx(100 * (3 * 2 / 3 + 2 * 1 / 2 + 1 * 1) / 6)


def test_a_class_never_predicted_scores_zero_without_error():
    m = classification_metrics(["a", "b", "b"], ["b", "b", "b"], labels=["a", "b", "c"])
    assert m["per_class"]["a"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["per_class"]["c"]["support"] == 0


def test_confusion_matrix_rows_are_actual_columns_predicted():
    order, matrix = confusion(TRUE, PRED)
    assert order == ["ekonomi", "spor", "tarım"]
    assert matrix.tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 2]]


def test_dvc_confusion_rows_and_png(tmp_path):
    rows = confusion_rows(TRUE, PRED)
    assert rows[2] == {"actual": "tarım", "predicted": "ekonomi"} and len(rows) == 6
    json.dumps(rows, ensure_ascii=False)
    order, matrix = confusion(TRUE, PRED)
    png = tmp_path / "confusion.png"
    confusion_png(png, [("news classifier", order, matrix)])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError):
        classification_metrics(["a"], [])
    assert isinstance(confusion(["a", "b"], ["a", "a"])[1], np.ndarray)
