"""Answer-only logits give the full-logits loss and gradients (padding, packing, gradient
accumulation, Gemma's softcapping), and the Trainer's loss history, while computing logits at the
answer positions only."""

import pytest
import torch

from pipeline.config import LoraConfig, TrainConfig
from pipeline.errors import HasatError
from pipeline.train.answer_only import AnswerOnlyTrainer, answer_only_inputs, answer_positions, check_answer_only
from pipeline.train.modeling import load_saved
from pipeline.train.packing import PackedCollator, pack, to_features
from pipeline.train.prompts import IGNORE_INDEX, tokenize_records
from pipeline.train.trainer import sft_data, train, wrap_lora

QA = [("Buğday ne zaman ekilir?", "Ekimde."),
      ("Damla sulamanın faydası nedir?", "Su tasarrufu sağlar ve verimi artırır."),
      ("Arılar kışa nasıl hazırlanır?", "Besin stoku bırakılır, kovan girişi daraltılır."),
      ("Toprak pH değeri neden ölçülür?", "Gübrelemeyi yönlendirmek için."),
      ("Traktör bakımı ne sıklıkla yapılır?", "Her sezon başında ve saat sayacına göre.")]


@pytest.fixture(scope="module")
def rows(tiny_model_dir):
    tokenizer, _ = load_saved(tiny_model_dir)
    records = [{"id": str(i), "source": f"t:{i}", "instruction": q, "input": "", "output": a}
               for i, (q, a) in enumerate(QA)]
    return tokenize_records(records, tokenizer, "chat_template", None, False, 384, "drop").records


def padded(tokenizer, rows):
    from transformers import DataCollatorForSeq2Seq

    collate = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX, return_tensors="pt")
    return dict(collate([{k: f[k] for k in ("input_ids", "attention_mask", "labels")} for f in to_features(rows)]))


def lora_model(tiny_model_dir):
    """The tiny model with LoRA (no dropout) and non-zero B matrices, so every LoRA weight gets a gradient."""
    tokenizer, model = load_saved(tiny_model_dir)
    model.config.use_cache = False
    model = wrap_lora(model, LoraConfig(dropout=0.0))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.02)
    return tokenizer, model


def loss_and_grads(model, batch, answer_only: bool, num_items_in_batch=None):
    model.zero_grad(set_to_none=True)
    inputs = answer_only_inputs(batch) if answer_only else batch
    extra = {} if num_items_in_batch is None else {"num_items_in_batch": num_items_in_batch}
    outputs = model(**inputs, **extra)
    outputs.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return outputs.loss.item(), grads, outputs.logits.shape


def assert_same_grads(a, b):
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        assert a[name].abs().sum() > 0, name
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-7, msg=name)


def test_answer_positions_are_the_ones_before_a_trained_label():
    labels = torch.tensor([[-100, -100, 7, 8, -100, -100],
                           [-100, 4, -100, 5, 6, -100]])
    assert answer_positions(labels).tolist() == [[False, True, True, False, False, False],
                                                 [True, False, True, True, False, False]]
    assert answer_only_inputs({"labels": labels})["shift_labels"].tolist() == [7, 8, 4, 5, 6]


def test_padded_batch_same_loss_and_lora_gradients(tiny_model_dir, rows):
    tokenizer, model = lora_model(tiny_model_dir)
    batch = padded(tokenizer, rows)
    full_loss, full_grads, full_shape = loss_and_grads(model, batch, answer_only=False)
    loss, grads, shape = loss_and_grads(model, batch, answer_only=True)
    trained = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    assert shape[0] == trained < full_shape[0] * full_shape[1]  # logits only where a label is trained
    assert loss == pytest.approx(full_loss, rel=1e-5)
    assert_same_grads(full_grads, grads)
    # the check can fail: keeping the label positions themselves (no causal shift) gives another loss
    unshifted = {**batch, "logits_to_keep": batch["labels"] != IGNORE_INDEX,
                 "shift_labels": batch["labels"][batch["labels"] != IGNORE_INDEX]}
    assert abs(model(**unshifted).loss.item() - full_loss) > 1e-3


def test_packed_batch_same_loss_and_lora_gradients(tiny_model_dir, rows):
    tokenizer, model = lora_model(tiny_model_dir)
    batch = PackedCollator(tokenizer.pad_token_id)(pack(rows, pack_length=256))
    assert batch["input_ids"].shape[0] >= 2 and (batch["position_ids"] == 0).sum() > batch["input_ids"].shape[0]
    full_loss, full_grads, _ = loss_and_grads(model, batch, answer_only=False)
    loss, grads, _ = loss_and_grads(model, batch, answer_only=True)
    assert loss == pytest.approx(full_loss, rel=1e-5)
    assert_same_grads(full_grads, grads)


def test_gradient_accumulation_divides_by_the_tokens_of_all_micro_batches(tiny_model_dir, rows):
    tokenizer, model = lora_model(tiny_model_dir)
    micro = [padded(tokenizer, rows[:2]), padded(tokenizer, rows[2:])]
    # what the Trainer counts: labels[..., 1:] that are not -100, over the accumulated batches
    total = sum((b["labels"][:, 1:] != IGNORE_INDEX).sum() for b in micro)
    results = {}
    for answer_only in (False, True):
        losses, grads = [], None
        for batch in micro:
            loss, step_grads, _ = loss_and_grads(model, batch, answer_only, num_items_in_batch=total)
            losses.append(loss)
            grads = step_grads if grads is None else {n: grads[n] + g for n, g in step_grads.items()}
        results[answer_only] = losses, grads
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-5)
    assert_same_grads(results[False][1], results[True][1])
    # num_items_in_batch matters: the per-micro-batch means are not what was accumulated
    means = [loss_and_grads(model, b, answer_only=True)[0] for b in micro]
    assert abs(sum(means) / 2 - sum(results[True][0])) > 1e-4


def test_gemma_softcapping_is_applied_to_the_kept_logits():
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=1, head_dim=16, sliding_window=8,
                              final_logit_softcapping=1.5)
    model = Gemma3ForCausalLM(config)
    with torch.no_grad():  # logits large enough for the softcap to bite
        model.lm_head.weight.normal_(std=1.0)
    check_answer_only(model)
    ids = torch.randint(2, 512, (2, 12))
    labels = ids.clone()
    labels[:, :6] = IGNORE_INDEX
    labels[1, 10:] = IGNORE_INDEX
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    with torch.no_grad():
        full = model(**batch).loss.item()
        answer_only = model(**answer_only_inputs(batch)).loss.item()
        model.config.final_logit_softcapping = None
        uncapped = model(**answer_only_inputs(batch)).loss.item()
    assert answer_only == pytest.approx(full, rel=1e-5)
    assert abs(uncapped - full) > 1e-2  # the softcap changes the loss: the check can fail


def test_a_model_without_a_logit_mask_is_refused():
    with pytest.raises(HasatError, match="answer_only_logits=false"):
        check_answer_only(torch.nn.Linear(4, 4))


def tiny_cfg(**overrides) -> TrainConfig:
    cfg = TrainConfig(learning_rate=1e-3, num_epochs=1, batch_size=2, gradient_accumulation_steps=2, max_steps=3,
                      evals_per_epoch=1, logging_steps=1, warmup_ratio=0.0)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


@pytest.mark.parametrize("packing", [False, True])
def test_trainer_loss_history_is_the_same_both_ways(tiny_model_dir, rows, tmp_path, packing):
    runs = {}
    for answer_only in (False, True):
        tokenizer, model = load_saved(tiny_model_dir)
        cfg = tiny_cfg(answer_only_logits=answer_only, packing=packing, pack_length=160)
        _, log, summary, _ = train(model, sft_data(tokenizer, rows * 3, rows, cfg), cfg, tmp_path / f"ck{answer_only}")
        runs[answer_only] = log, summary
    (full_log, full_summary), (log, summary) = runs[False], runs[True]
    assert (full_summary["answer_only_logits"], summary["answer_only_logits"]) == (False, True)
    assert len(log.train) == len(full_log.train) == 3 and len(log.val) == len(full_log.val) >= 1
    assert [r["loss"] for r in log.train] == pytest.approx([r["loss"] for r in full_log.train], rel=1e-4)
    assert [r["loss"] for r in log.val] == pytest.approx([r["loss"] for r in full_log.val], rel=1e-4)


def test_eval_loss_is_the_same_and_predictions_keep_every_position(tiny_model_dir, rows, tmp_path):
    from datasets import Dataset
    from transformers import Trainer

    from pipeline.train.trainer import training_arguments

    tokenizer, model = lora_model(tiny_model_dir)
    data = sft_data(tokenizer, rows, rows, tiny_cfg())
    args = training_arguments(tiny_cfg(), len(rows), tmp_path)
    evaluation = Dataset.from_list(data.eval_features)
    losses = {}
    for trainer_class in (Trainer, AnswerOnlyTrainer):
        trainer = trainer_class(model=model, args=args, eval_dataset=evaluation, data_collator=data.collator)
        losses[trainer_class] = trainer.evaluate()["eval_loss"]
    assert losses[AnswerOnlyTrainer] == pytest.approx(losses[Trainer], rel=1e-5)
    assert trainer.predict(evaluation.select(range(2))).predictions is None  # prediction_loss_only, as train() asks
    args.prediction_loss_only = False
    trainer = AnswerOnlyTrainer(model=model, args=args, eval_dataset=evaluation, data_collator=data.collator)
    predicted = trainer.predict(evaluation.select(range(2)))
    assert predicted.predictions.shape[:2] == predicted.label_ids.shape  # every position's logits


def test_classification_ignores_the_switch(tiny_model_dir, tmp_path):
    from pipeline.train.classifier import classification_data, sequence_classifier

    tokenizer, model = sequence_classifier(tiny_model_dir, ["a", "b"])
    rows = [{"input_ids": tokenizer(text)["input_ids"], "label_id": i % 2}
            for i, text in enumerate(["buğday", "arpa tarlası", "mısır hasadı", "fındık bahçesi"])]
    cfg = tiny_cfg(answer_only_logits=True, max_steps=1, gradient_accumulation_steps=1)
    _, log, summary, _ = train(model, classification_data(tokenizer, rows, rows), cfg, tmp_path / "ck")
    assert summary["answer_only_logits"] is False and log.train
