"""Text classification with a causal LM and a classification head (as GPT2ForSequenceClassification
/ LlamaForSequenceClassification do: the last non-pad token is pooled), plus the scikit-learn
baselines it has to beat: the majority class and TF-IDF character n-grams + logistic regression.
"""

from __future__ import annotations

from collections import Counter
from typing import Optional, Sequence

import torch

from pipeline.errors import HasatError


def label_list(rows: list[dict], configured: Optional[Sequence[str]] = None) -> list[str]:
    """The configured labels, or the ones in `rows` sorted (a stable order for label ids)."""
    if configured:
        return [str(label) for label in configured]
    return sorted({str(r["label"]) for r in rows})


def check_labels(rows: list[dict], labels: Sequence[str], where: str) -> None:
    """One clear line for a label the model does not know."""
    known = set(labels)
    for row in rows:
        if str(row["label"]) not in known:
            raise HasatError(f"{row.get('source', where)}: unknown label '{row['label']}' in {where} "
                             f"(known: {', '.join(labels)})")


def encode_texts(rows: list[dict], tokenizer, labels: Sequence[str], max_seq_len: int) -> tuple[list[dict], int]:
    """Token ids of each text (no EOS: with pad == eos it would be pooled as padding) and its label id.

    Returns (encoded rows, number of texts truncated to max_seq_len)."""
    label_id = {label: i for i, label in enumerate(labels)}
    encoded, truncated = [], 0
    for row in rows:
        ids = tokenizer(row["text"], add_special_tokens=True)["input_ids"]
        if len(ids) > max_seq_len:
            ids, truncated = ids[:max_seq_len], truncated + 1
        encoded.append({**row, "input_ids": ids, "label_id": label_id[str(row["label"])]})
    return encoded, truncated


def class_weights(rows: list[dict], labels: Sequence[str]) -> list[float]:
    """Inverse-frequency weights, mean 1 over the rows ("balanced" as scikit-learn defines it)."""
    counts = Counter(str(r["label"]) for r in rows)
    missing = [label for label in labels if not counts[label]]
    if missing:
        raise HasatError(f"train split has no example of class(es) {', '.join(missing)}")
    return [len(rows) / (len(labels) * counts[label]) for label in labels]


def sequence_classifier(base_dir, labels: Sequence[str], dtype=None):
    """The causal base with a fresh classification head; pad token set so pooling finds the last token."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        base_dir, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)}, dtype=dtype or "auto")
    model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def weighted_loss(weights: Optional[list[float]]):
    """A Trainer `compute_loss_func`: cross-entropy, class-weighted when weights are given."""
    weight = torch.tensor(weights, dtype=torch.float32) if weights else None

    def loss(outputs, labels, num_items_in_batch=None):
        logits = outputs.logits
        return torch.nn.functional.cross_entropy(logits.float(), labels.to(logits.device),
                                                 weight=None if weight is None else weight.to(logits.device))

    return loss


def predict(model, tokenizer, rows: list[dict], batch_size: int) -> list[int]:
    """Predicted label ids, in the order of `rows` (batched, right padding)."""
    return predict_with_confidence(model, tokenizer, rows, batch_size)[0]


def predict_with_confidence(model, tokenizer, rows: list[dict], batch_size: int) -> tuple[list[int], list[float]]:
    """Predicted label ids and the softmax probability of each prediction, in the order of `rows`."""
    model.eval()
    dev = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id
    predictions: list[int] = []
    confidence: list[float] = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        width = max(len(r["input_ids"]) for r in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, row in enumerate(batch):
            ids[i, : len(row["input_ids"])] = torch.tensor(row["input_ids"])
            mask[i, : len(row["input_ids"])] = 1
        with torch.inference_mode():
            logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits.float()
        best = logits.softmax(-1).max(-1)
        predictions += best.indices.tolist()
        confidence += best.values.tolist()
    return predictions, confidence


def baselines(train_rows: list[dict], test_rows: list[dict], seed: int = 0) -> dict[str, list[str]]:
    """Predicted labels of the majority class and of TF-IDF char n-grams + logistic regression."""
    from sklearn.dummy import DummyClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from pipeline.data.turkish import tr_lower

    texts, labels = [r["text"] for r in train_rows], [str(r["label"]) for r in train_rows]
    test_texts = [r["text"] for r in test_rows]
    majority = DummyClassifier(strategy="most_frequent").fit(texts, labels)
    tfidf = make_pipeline(
        # character n-grams within word boundaries suit Turkish suffixes; Turkish-aware lower-casing
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), preprocessor=tr_lower, sublinear_tf=True),
        LogisticRegression(max_iter=2000, class_weight="balanced", random_state=seed),
    ).fit(texts, labels)
    return {"majority": [str(p) for p in majority.predict(test_texts)],
            "tfidf_char_lr": [str(p) for p in tfidf.predict(test_texts)]}

