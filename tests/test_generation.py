import pytest
import torch

from pipeline.eval.generation import GREEDY, Decoding, TopKTopP, generate
from pipeline.train.modeling import load_saved
from pipeline.train.prompts import prompt_ids


def test_batched_generation_equals_one_at_a_time(tiny_model_dir):
    tokenizer, model = load_saved(tiny_model_dir)
    questions = ["Buğday?", "Toprak pH değeri kaç olmalı ve neden önemlidir?", "Arı", "Damla sulama nedir?"]
    prompts = [prompt_ids({"instruction": q, "input": ""}, tokenizer, "chat_template", None) for q in questions]
    batched = generate(model, tokenizer, prompts, max_new_tokens=12, batch_size=4)
    single = [generate(model, tokenizer, [p], max_new_tokens=12, batch_size=1)[0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in single]
    assert all(g.n_new_tokens <= 12 for g in batched)
    assert all(g.stopped or g.n_new_tokens == 12 for g in batched)


def test_decoding_settings_reach_generate():
    assert GREEDY.generate_kwargs() == {"do_sample": False, "num_beams": 1, "temperature": None, "top_p": None,
                                        "top_k": None}
    sampling = Decoding(do_sample=True, temperature=0.7, top_p=0.9, top_k=20, repetition_penalty=1.2,
                        no_repeat_ngram_size=3, seed=7)
    kwargs = sampling.generate_kwargs()
    [warper] = kwargs.pop("logits_processor")  # temperature, top-k and top-p in one (TopKTopP)
    assert (warper.temperature, warper.top_k, warper.top_p) == (0.7, 20, 0.9)
    assert kwargs == {"do_sample": True, "num_beams": 1, "temperature": 1.0, "top_p": 1.0, "top_k": 0,
                      "repetition_penalty": 1.2, "no_repeat_ngram_size": 3}
    assert Decoding(do_sample=True, temperature=0.7, top_k=0).generate_kwargs() == \
        {"do_sample": True, "num_beams": 1, "temperature": 0.7, "top_p": 1.0, "top_k": 0}
    assert sampling.describe() == ("sampling (temperature=0.7, top_p=0.9, top_k=20, seed=7), repetition_penalty=1.2, "
                                   "no_repeat_ngram_size=3")
    assert GREEDY.describe() == "greedy"


def test_sampling_is_reproducible_with_its_seed(tiny_model_dir):
    tokenizer, model = load_saved(tiny_model_dir)
    prompts = [prompt_ids({"instruction": q, "input": ""}, tokenizer, "chat_template", None) for q in ("Buğday?", "Arı")]
    sampling = Decoding(do_sample=True, temperature=1.5, top_k=0, seed=11)
    first = generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=2, decoding=sampling)
    again = generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=2, decoding=sampling)
    other = generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=2,
                     decoding=Decoding(do_sample=True, temperature=1.5, top_k=0, seed=12))
    assert [g.text for g in first] == [g.text for g in again]
    assert [g.text for g in first] != [g.text for g in other]


def test_no_repeat_ngram_size_forbids_repeats(tiny_model_dir):
    tokenizer, model = load_saved(tiny_model_dir)
    prompt = prompt_ids({"instruction": "Toprak", "input": ""}, tokenizer, "chat_template", None)
    eos = tokenizer.eos_token_id
    import torch

    with torch.inference_mode():
        out = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=30, do_sample=False,
                             no_repeat_ngram_size=2, eos_token_id=eos, pad_token_id=eos)
    new = out[0, len(prompt):].tolist()
    [g] = generate(model, tokenizer, [prompt], max_new_tokens=30, batch_size=1, decoding=Decoding(no_repeat_ngram_size=2))
    bigrams = list(zip(new, new[1:]))
    assert len(bigrams) == len(set(bigrams))
    assert g.text == tokenizer.decode([t for t in new if t != eos], skip_special_tokens=True).strip()


@pytest.mark.parametrize("temperature, top_k, top_p", [(0.7, 50, 0.9), (1.0, 5, 0.5), (1.3, 200, 1.0), (0.5, 40, 0.01)])
def test_one_top_k_top_p_warper_gives_what_transformers_warpers_give(temperature, top_k, top_p):
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    scores = torch.randn(6, 5000, generator=torch.Generator().manual_seed(top_k)) * 4
    expected = TemperatureLogitsWarper(temperature)(None, scores.clone())
    expected = TopKLogitsWarper(top_k)(None, expected)
    if top_p < 1.0:
        expected = TopPLogitsWarper(top_p)(None, expected)
    ours = TopKTopP(temperature, top_k, top_p)(None, scores.clone())
    assert torch.equal(torch.isinf(ours), torch.isinf(expected))
    assert torch.allclose(ours[~torch.isinf(ours)], expected[~torch.isinf(expected)])
    assert (~torch.isinf(ours)).sum(dim=-1).min() >= 1


def test_sampled_answers_are_the_ones_transformers_own_warpers_draw(tiny_model_dir):
    tokenizer, model = load_saved(tiny_model_dir)
    prompt = prompt_ids({"instruction": "Buğday?", "input": ""}, tokenizer, "chat_template", None)
    eos = tokenizer.eos_token_id
    torch.manual_seed(5)
    with torch.inference_mode():
        out = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=16, do_sample=True, temperature=0.5,
                             top_k=40, top_p=0.6, eos_token_id=eos, pad_token_id=eos)
    # (these settings tell the warpers apart: temperature 1.0, top-p 1.0 or top-k 20 draw other answers)
    [g] = generate(model, tokenizer, [prompt], max_new_tokens=16, batch_size=1,
                   decoding=Decoding(do_sample=True, temperature=0.5, top_k=40, top_p=0.6, seed=5))
    new = out[0, len(prompt):].tolist()
    assert g.text == tokenizer.decode([t for t in new if t != eos], skip_special_tokens=True).strip() and g.text
