"""Classification metrics (scikit-learn) and the confusion matrix as `dvc plots` data and a PNG.

`dvc plots` draws a confusion matrix from a JSON (or CSV) list of rows with the actual and the
predicted class, using its built-in `confusion` template. In dvc.yaml:

    plots:
      - reports/eval/confusion.json:
          template: confusion        # or confusion_normalized
          x: actual
          y: predicted

`confusion_rows` writes exactly those rows; `plots.confusion_png` draws the same matrix for MLflow.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def labels_of(y_true: Sequence, y_pred: Sequence, labels: Optional[Sequence] = None) -> list:
    """The class order: as given, else every class seen (true or predicted), sorted."""
    return list(labels) if labels is not None else sorted(set(y_true) | set(y_pred), key=str)


def classification_metrics(y_true: Sequence, y_pred: Sequence, labels: Optional[Sequence] = None) -> dict:
    """Accuracy, macro and weighted F1 (0–100) and per-class precision/recall/F1/support.

    A class that is never predicted (or never present) has precision (or recall) 0, not an error.
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    if len(y_true) != len(y_pred) or not len(y_true):
        raise ValueError("need the same, non-zero number of true and predicted labels")
    order = labels_of(y_true, y_pred, labels)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=order, zero_division=0)
    return {
        "accuracy": 100 * accuracy_score(y_true, y_pred),
        "macro_f1": 100 * f1_score(y_true, y_pred, labels=order, average="macro", zero_division=0),
        "weighted_f1": 100 * f1_score(y_true, y_pred, labels=order, average="weighted", zero_division=0),
        "per_class": {str(label): {"precision": 100 * float(p), "recall": 100 * float(r), "f1": 100 * float(f),
                                   "support": int(s)}
                      for label, p, r, f, s in zip(order, precision, recall, f1, support)},
    }


def confusion(y_true: Sequence, y_pred: Sequence, labels: Optional[Sequence] = None) -> tuple[list, np.ndarray]:
    """(class order, matrix) with rows = actual class, columns = predicted class."""
    from sklearn.metrics import confusion_matrix

    order = labels_of(y_true, y_pred, labels)
    return order, confusion_matrix(y_true, y_pred, labels=order)


def confusion_rows(y_true: Sequence, y_pred: Sequence) -> list[dict]:
    """One {"actual", "predicted"} row per item: the data file of DVC's `confusion` template."""
    return [{"actual": str(t), "predicted": str(p)} for t, p in zip(y_true, y_pred)]
