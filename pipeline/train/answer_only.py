"""Answer-only logits: the causal LM's output layer and cross-entropy at the trained positions only.

In instruction tuning the prompt's labels are -100, yet a plain forward pass projects every
position onto the vocabulary; with Gemma 3's 262k-token vocabulary that projection (its logits and
their gradient) is most of a step's time and memory. Position t predicts label t + 1, so the
positions kept are those whose *next* label is not -100.

transformers 5 models take a boolean (batch, sequence) mask as `logits_to_keep`
(`modeling_utils.slice_logits_to_keep`): they gather those hidden states, apply `lm_head` (and
Gemma's final-logit softcapping) to them alone and return the logits flattened, row after row.
Their own loss (`ForCausalLMLoss`) then gets the targets of those positions as `shift_labels`, so
the reduction, `num_items_in_batch` under gradient accumulation and the Trainer's scaling stay
HF's: the loss equals the full-logits loss, on a fraction of the logits.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from transformers import Trainer

from pipeline.errors import HasatError
from pipeline.train.modeling import causal_lm, takes_position_mask
from pipeline.train.prompts import IGNORE_INDEX


def answer_positions(labels: torch.Tensor) -> torch.Tensor:
    """(batch, sequence) bool: the positions whose logits predict a trained label."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return keep


def answer_only_inputs(inputs: Mapping) -> dict:
    """The model inputs with `logits_to_keep` (the answer positions) and `shift_labels` (their
    targets, in the order of the flattened logits); `labels` stays, so the model computes its loss."""
    labels = inputs["labels"]
    next_labels = labels[:, 1:]
    targets = next_labels[next_labels != IGNORE_INDEX]
    return {**inputs, "logits_to_keep": answer_positions(labels), "shift_labels": targets}


def check_answer_only(model) -> None:
    """Fail before training when the model cannot compute answer-only logits and loss."""
    from transformers.loss.loss_utils import ForCausalLMLoss

    lm = causal_lm(model)
    if not takes_position_mask(lm) or getattr(lm, "loss_function", None) is not ForCausalLMLoss:
        raise HasatError(f"{type(lm).__name__} cannot compute answer-only logits (no boolean logits_to_keep or "
                         "no causal-LM loss); set train.answer_only_logits=false")


class AnswerOnlyTrainer(Trainer):
    """The HF Trainer with a causal LM's logits and loss computed at the answer positions only.

    Training and validation losses equal the plain Trainer's. A prediction that returns logits
    (prediction_loss_only=False) takes the full path, so its logits line up with its labels."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.compute_loss_func is not None or self.label_smoother is not None:
            raise HasatError("answer-only logits use the model's own loss: no compute_loss_func or label smoothing")
        check_answer_only(self.model)
        self._full_logits = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self._full_logits and inputs.get("labels") is not None:
            inputs = answer_only_inputs(inputs)
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        if prediction_loss_only:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        self._full_logits = True
        try:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        finally:
            self._full_logits = False
