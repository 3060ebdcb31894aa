"""The zero-shot LLM classifier: reply mapping (the synonym table), constrained scoring (checked against a
hand-computed forward per pair), free generation, and the endpoint backend against a local fake server."""

from __future__ import annotations

import pytest
import torch

from abhinaya.labels import CORPUS_LABEL_SETS
from abhinaya.models.zero_shot import (
    UNCHOSEN_LOGIT,
    EndpointZeroShot,
    ZeroShotConfig,
    ZeroShotLM,
    build_zero_shot,
    map_reply_to_label,
)
from abhinaya.testing.chat_server import FakeChatServer

MELD = CORPUS_LABEL_SETS["meld"]
MSP = CORPUS_LABEL_SETS["msp-podcast"]
TEXTS = ["oh no this is terrible", "wow", "i love you so very much really !", "okay fine", "why are you so sad ?"]


# ----------------------------------------------------------------------------- replies -> classes

MELD_REPLIES = [
    ("happy", "happy"),
    ("Happy.", "happy"),
    ("  **Joyful**  ", "happy"),
    ("happiness", "happy"),
    ("'sad'", "sad"),
    ("Sadness", "sad"),
    ("unhappy", "sad"),
    ("ANGER!", "angry"),
    ("furious", "angry"),
    ("mad", "angry"),
    ("I think the emotion is: Anger.", "angry"),
    ("Surprised", "surprise"),
    ("astonished!", "surprise"),
    ("`fearful`", "fear"),
    ("Scared.", "fear"),
    ("afraid", "fear"),
    ("Disgusted", "disgust"),
    ("No emotion.", "neutral"),
    ("none", "neutral"),
    ("Neutrality", "neutral"),
    ("The sentence expresses sadness, not joy.", "sad"),  # the first emotion word wins
    ("", None),
    ("banana", None),
    ("I'm sorry, I cannot help with that", None),
    ("calm", None),  # calm is no MELD class
    ("contemptuous", None),  # neither is contempt
]


@pytest.mark.parametrize("reply, expected", MELD_REPLIES)
def test_map_reply_to_label_meld(reply, expected):
    assert map_reply_to_label(reply, MELD) == expected
    assert map_reply_to_label(reply, MELD, fallback="neutral") == (expected or "neutral")


def test_map_reply_uses_only_classes_of_the_label_set():
    assert map_reply_to_label("Contemptuous.", MSP) == "contempt"
    assert map_reply_to_label("calmness", CORPUS_LABEL_SETS["ravdess"]) == "calm"
    assert map_reply_to_label("bored", CORPUS_LABEL_SETS["emodb"]) == "boredom"
    assert map_reply_to_label("Boredom", MELD) is None
    # a word of a class outside the set is passed over for a later one
    assert map_reply_to_label("calm, or maybe happy", MELD) == "happy"
    assert map_reply_to_label("glee", MELD, {"glee": "happy"}) == "happy"


# ----------------------------------------------------------------------------- constrained scoring


def build(tiny_llama_dir, label_set=MELD, pretrained=True, **settings) -> ZeroShotLM:
    return build_zero_shot(ZeroShotConfig(model=str(tiny_llama_dir), **settings), label_set, pretrained=pretrained)


def hand_scores(folder, system: str, text: str, words: list[str]) -> torch.Tensor:
    """Per pair: tokenise prompt and prompt + reply with the chat template, take
    the reply tokens (to the end-of-turn token) as the suffix, one forward, sum."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    lm = AutoModelForCausalLM.from_pretrained(folder).eval()
    messages = [{"role": "system", "content": system}, {"role": "user", "content": f"sentence: {text}"}]
    prompt = tokenizer(
        tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), add_special_tokens=False
    )["input_ids"]
    scores = []
    for word in words:
        exchange = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": word}], tokenize=False)
        full = tokenizer(exchange, add_special_tokens=False)["input_ids"]
        assert full[: len(prompt)] == prompt
        reply = full[len(prompt) :]
        reply = reply[: reply.index(tokenizer.eos_token_id) + 1]
        with torch.no_grad():
            logprobs = torch.log_softmax(lm(input_ids=torch.tensor([prompt + reply])).logits[0], dim=-1)
        scores.append(sum(float(logprobs[len(prompt) - 1 + j, token]) for j, token in enumerate(reply)))
    return torch.tensor(scores)


@pytest.mark.parametrize("reuse_prefix_cache", [True, False])
def test_constrained_scores_equal_a_forward_per_pair(tiny_llama_dir, reuse_prefix_cache):
    # replies of different lengths (a two-word label word) exercise the cached second stage
    words = {"sad": "sadness", "angry": "angry fear"}
    model = build(tiny_llama_dir, reuse_prefix_cache=reuse_prefix_cache, label_words=words)
    scores = model.label_log_likelihoods(TEXTS)  # different lengths: padding is in play
    assert scores.shape == (len(TEXTS), len(MELD)) and torch.isfinite(scores).all()
    assert (scores < 0).all()
    expected = hand_scores(tiny_llama_dir, model.system_prompt, TEXTS[2], model.label_words)
    torch.testing.assert_close(scores[2], expected, atol=1e-4, rtol=1e-4)
    alone = model.label_log_likelihoods([TEXTS[2]])[0]
    torch.testing.assert_close(alone, expected, atol=1e-4, rtol=1e-4)


def test_reply_template_scores_the_class_part_of_the_reply(tiny_llama_dir):
    model = build(tiny_llama_dir, reply_template="the emotion is {word} .")
    assert len(model.reply_prefix_ids) == 3 and all(len(r) == 3 for r in model.reply_ids)  # word . <|im_end|>
    scores = model.label_log_likelihoods(TEXTS)
    full = hand_scores(tiny_llama_dir, model.system_prompt, TEXTS[0], [f"the emotion is {w} ." for w in model.label_words])
    # the shared start "the emotion is" adds the same log-likelihood to every class
    difference = full - scores[0]
    torch.testing.assert_close(difference, difference.mean().expand_as(difference), atol=1e-4, rtol=0)
    assert float(difference.mean()) < 0
    generating = build(tiny_llama_dir, mode="generate", calibration="none", reply_template="the emotion is {word}")
    assert generating.scoring_ids("wow")[-3:] == generating.reply_prefix_ids
    assert len(generating(TEXTS[:2])) == 2


def test_label_words_appear_in_the_prompt(tiny_llama_dir):
    model = build(tiny_llama_dir, label_words={"happy": "joy"})
    assert "neutral, joy, surprise, angry, sad, disgust, fear" in model.prompt_text("wow")
    assert model.prompt_text("wow").rstrip().endswith("assistant")
    assert model.prefix_ids and model.prompt_ids("wow")[: len(model.prefix_ids)] == model.prefix_ids


def test_random_weights_build_without_reading_weights(tiny_llama_dir):
    model = build(tiny_llama_dir, pretrained=False)
    assert model.label_log_likelihoods(["wow"]).shape == (1, len(MELD))


def test_label_words_and_fallback_outside_the_label_set_are_rejected(tiny_llama_dir):
    with pytest.raises(ValueError, match="label_words names"):
        build(tiny_llama_dir, label_words={"joy": "joy"})
    with pytest.raises(ValueError, match="fallback_label 'contempt'"):
        build(tiny_llama_dir, fallback_label="contempt")


# ----------------------------------------------------------------------------- generation


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_generation_gives_a_class_for_every_row(tiny_llama_dir, temperature):
    model = build(tiny_llama_dir, mode="generate", calibration="none", temperature=temperature, max_new_tokens=4)
    logits = model(TEXTS, [f"u{i}" for i in range(len(TEXTS))])
    assert logits.shape == (len(TEXTS), len(MELD))
    assert ((logits == 0).sum(dim=1) == 1).all()
    assert ((logits == UNCHOSEN_LOGIT) | (logits == 0)).all()
    stats = model.reply_stats()
    assert stats["replies"] == len(TEXTS) and 0 <= stats["unmapped"] <= len(TEXTS)
    assert model(TEXTS).argmax(dim=1).tolist() == logits.argmax(dim=1).tolist()  # reproducible (seeded)


def test_unmappable_replies_fall_back_and_are_counted(tiny_llama_dir, monkeypatch, caplog):
    model = build(tiny_llama_dir, mode="generate", calibration="none")
    monkeypatch.setattr(model, "generate_replies", lambda texts: ["I am not sure.", "Anger!", ""])
    with caplog.at_level("WARNING"):
        logits = model(["a", "b", "c"], ["utt-a", "utt-b", "utt-c"])
    assert [MELD.decode(i) for i in logits.argmax(dim=1).tolist()] == ["neutral", "angry", "neutral"]
    assert model.reply_stats() == {"replies": 3, "unmapped": 2}
    assert "utt-a" in caplog.text and "utt-c" in caplog.text


# ----------------------------------------------------------------------------- the endpoint backend


def test_endpoint_needs_a_url(monkeypatch):
    monkeypatch.delenv("ABHINAYA_LLM_URL", raising=False)
    config = ZeroShotConfig(backend="endpoint", mode="generate", calibration="none")
    with pytest.raises(ValueError, match="ABHINAYA_LLM_URL"):
        build_zero_shot(config, MSP)




def test_endpoint_backend_maps_replies_and_counts_requests(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeChatServer([("ok", "Sad."), ("ok", "banana")]) as server:
        config = ZeroShotConfig(backend="endpoint", model="m", mode="generate", calibration="none",
                                endpoint_url=server.url, concurrency=1)
        model = build_zero_shot(config, MELD)
        logits = model(["x", "y"], ["a", "b"])
    assert isinstance(model, EndpointZeroShot) and not list(model.parameters())
    assert [MELD.decode(i) for i in logits.argmax(dim=1).tolist()] == ["sad", "neutral"]
    assert model.reply_stats() == {"replies": 2, "unmapped": 1, "requests": 2, "retries": 0}


def test_fit_calibration_stores_the_mean_log_likelihood(tiny_llama_dir):
    model = build(tiny_llama_dir, calibration="train_mean")
    model.fit_calibration(TEXTS, batch_size=2)
    torch.testing.assert_close(model.calibration_bias, model.label_log_likelihoods(TEXTS).mean(dim=0))
    with pytest.raises(ValueError, match="at least one transcript"):
        model.fit_calibration([], batch_size=2)
