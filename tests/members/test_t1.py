"""T1, the zero-shot LLM member: reply mapping, constrained scoring (checked
against a hand-computed forward per pair), calibration, free generation, the
chat-completions client against a local fake server, and the two recipes."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from abhinaya.labels import CORPUS_LABEL_SETS, LabelSet
from abhinaya.manifest import Utterance
from abhinaya.members.t1 import (
    UNCHOSEN_LOGIT,
    EndpointZeroShot,
    T1Config,
    T1Member,
    T1Recipe,
    ZeroShotLM,
    map_reply_to_label,
)
from abhinaya.models.chat_endpoint import (
    ChatCompletionsClient,
    EndpointError,
    chat_completions_url,
)
from abhinaya.recipes import ConfigError, from_dict
from abhinaya.runs import load_recipe
from abhinaya.weights.checkpoint import load_model_weights, save_tensors

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
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


# ----------------------------------------------------------------------------- configuration


def test_recipe_rejects_unknown_keys_and_bad_combinations():
    with pytest.raises(ConfigError, match="model.bogus"):
        from_dict(T1Recipe, {"member": "t1", "model": {"bogus": 1}})
    with pytest.raises(ConfigError, match="only mode 'generate'"):
        from_dict(T1Recipe, {"model": {"backend": "endpoint", "mode": "constrained", "calibration": "none"}})
    with pytest.raises(ConfigError, match="calibration"):
        from_dict(T1Recipe, {"model": {"mode": "generate"}})
    with pytest.raises(ConfigError, match=r"\{text\}"):
        from_dict(T1Recipe, {"model": {"user_template": "sentence"}})
    with pytest.raises(ConfigError, match="not one of"):
        from_dict(T1Recipe, {"model": {"mode": "vote"}})
    with pytest.raises(ConfigError, match=r"\{word\}"):
        from_dict(T1Recipe, {"model": {"reply_template": "The emotion is"}})
    with pytest.raises(ConfigError, match="cannot start the reply"):
        from_dict(T1Recipe, {"model": {"backend": "endpoint", "mode": "generate", "calibration": "none",
                                       "reply_template": "It is {word}"}})


def test_member_rejects_label_words_and_fallback_outside_the_label_set(tiny_llama_dir):
    member = T1Member(T1Recipe(model=T1Config(model=str(tiny_llama_dir), label_words={"joy": "joy"})))
    with pytest.raises(ValueError, match="label_words names"):
        member.build(MELD, pretrained=True)[0]
    member = T1Member(T1Recipe(model=T1Config(model=str(tiny_llama_dir), fallback_label="contempt")))
    with pytest.raises(ValueError, match="fallback_label 'contempt'"):
        member.build(MELD, pretrained=True)[0]


# ----------------------------------------------------------------------------- constrained scoring


def build(tiny_llama_dir, label_set=MELD, **settings) -> tuple[T1Member, ZeroShotLM]:
    member = T1Member(T1Recipe(model=T1Config(model=str(tiny_llama_dir), **settings)))
    return member, member.build(label_set, pretrained=True)[0]


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
    _, model = build(tiny_llama_dir, reuse_prefix_cache=reuse_prefix_cache, label_words=words)
    scores = model.label_log_likelihoods(TEXTS)  # different lengths: padding is in play
    assert scores.shape == (len(TEXTS), len(MELD)) and torch.isfinite(scores).all()
    assert (scores < 0).all()
    expected = hand_scores(tiny_llama_dir, model.system_prompt, TEXTS[2], model.label_words)
    torch.testing.assert_close(scores[2], expected, atol=1e-4, rtol=1e-4)
    alone = model.label_log_likelihoods([TEXTS[2]])[0]
    torch.testing.assert_close(alone, expected, atol=1e-4, rtol=1e-4)


def test_reply_template_scores_the_class_part_of_the_reply(tiny_llama_dir):
    _, model = build(tiny_llama_dir, reply_template="the emotion is {word} .")
    assert len(model.reply_prefix_ids) == 3 and all(len(r) == 3 for r in model.reply_ids)  # word . <|im_end|>
    scores = model.label_log_likelihoods(TEXTS)
    full = hand_scores(tiny_llama_dir, model.system_prompt, TEXTS[0], [f"the emotion is {w} ." for w in model.label_words])
    # the shared start "the emotion is" adds the same log-likelihood to every class
    difference = full - scores[0]
    torch.testing.assert_close(difference, difference.mean().expand_as(difference), atol=1e-4, rtol=0)
    assert float(difference.mean()) < 0
    _, generating = build(tiny_llama_dir, mode="generate", calibration="none", reply_template="the emotion is {word}")
    assert generating.scoring_ids("wow")[-3:] == generating.reply_prefix_ids
    assert len(generating(TEXTS[:2])) == 2


def test_label_words_appear_in_the_prompt(tiny_llama_dir):
    _, model = build(tiny_llama_dir, label_words={"happy": "joy"})
    assert "neutral, joy, surprise, angry, sad, disgust, fear" in model.prompt_text("wow")
    assert model.prompt_text("wow").rstrip().endswith("assistant")
    assert model.prefix_ids and model.prompt_ids("wow")[: len(model.prefix_ids)] == model.prefix_ids


def test_calibration_shifts_by_the_stored_bias_and_round_trips(tiny_llama_dir, tmp_path):
    member, model = build(tiny_llama_dir, calibration="train_mean", calibration_utterances=4)
    utterances = [Utterance(id=f"u{i}", label="neutral", text=text) for i, text in enumerate(TEXTS)]
    dataset = member.dataset(utterances, MELD, train=False)
    raw = member.logits(model, member.collate([dataset[i] for i in range(len(dataset))]))
    assert torch.equal(model.calibration_bias, torch.zeros(len(MELD)))

    used = member.calibrate(model, dataset)
    assert used == 4
    bias = model.calibration_bias.clone()
    chosen = [TEXTS[i] for i in _sample(len(TEXTS), 4)]  # the reproducible sample calibrate draws
    torch.testing.assert_close(bias, model.label_log_likelihoods(chosen).mean(dim=0))
    calibrated = member.logits(model, member.collate([dataset[i] for i in range(len(dataset))]))
    torch.testing.assert_close(calibrated, raw - bias)

    state = member.saved_state(model)
    assert set(state) == {"calibration_bias"}
    save_tensors(tmp_path / "model.safetensors", state)
    _, rebuilt = build(tiny_llama_dir, calibration="train_mean")
    load_model_weights(rebuilt, tmp_path / "model.safetensors", partial=True)
    assert torch.equal(rebuilt.calibration_bias, bias)
    torch.testing.assert_close(rebuilt(TEXTS), calibrated)


def _sample(population: int, count: int) -> list[int]:
    import random

    return random.Random(0).sample(range(population), count)


def test_without_calibration_nothing_is_fitted(tiny_llama_dir):
    member, model = build(tiny_llama_dir, calibration="none")
    dataset = member.dataset([Utterance(id="a", label="sad", text="oh no")], MELD, train=False)
    assert member.calibrate(model, dataset) is None
    assert torch.equal(model.calibration_bias, torch.zeros(len(MELD)))


def test_random_weights_build_without_reading_weights(tiny_llama_dir):
    member = T1Member(T1Recipe(model=T1Config(model=str(tiny_llama_dir))))
    model = member.build(MELD, pretrained=False)[0]
    assert model.label_log_likelihoods(["wow"]).shape == (1, len(MELD))


# ----------------------------------------------------------------------------- generation


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_generation_gives_a_class_for_every_row(tiny_llama_dir, temperature):
    _, model = build(tiny_llama_dir, mode="generate", calibration="none", temperature=temperature, max_new_tokens=4)
    logits = model(TEXTS, [f"u{i}" for i in range(len(TEXTS))])
    assert logits.shape == (len(TEXTS), len(MELD))
    assert ((logits == 0).sum(dim=1) == 1).all()
    assert ((logits == UNCHOSEN_LOGIT) | (logits == 0)).all()
    stats = model.reply_stats()
    assert stats["replies"] == len(TEXTS) and 0 <= stats["unmapped"] <= len(TEXTS)
    assert model(TEXTS).argmax(dim=1).tolist() == logits.argmax(dim=1).tolist()  # reproducible (seeded)


def test_unmappable_replies_fall_back_and_are_counted(tiny_llama_dir, monkeypatch, caplog):
    _, model = build(tiny_llama_dir, mode="generate", calibration="none")
    monkeypatch.setattr(model, "generate_replies", lambda texts: ["I am not sure.", "Anger!", ""])
    with caplog.at_level("WARNING"):
        logits = model(["a", "b", "c"], ["utt-a", "utt-b", "utt-c"])
    assert [MELD.decode(i) for i in logits.argmax(dim=1).tolist()] == ["neutral", "angry", "neutral"]
    assert model.reply_stats() == {"replies": 3, "unmapped": 2}
    assert "utt-a" in caplog.text and "utt-c" in caplog.text


def test_dataset_skips_rows_without_transcript_and_cuts_long_ones(tiny_llama_dir):
    member = T1Member(T1Recipe(model=T1Config(model=str(tiny_llama_dir), max_words=3)))
    rows = [Utterance(id="a", label="happy", text="one two three four five"), Utterance(id="b", label="sad", text=" ")]
    with pytest.raises(ValueError, match="b: no transcript"):
        member.dataset(rows, MELD, train=False)
    dataset = member.dataset(rows, MELD, train=False, on_error="skip")
    assert len(dataset) == 1 and dataset.errors[0].startswith("b: no transcript")
    batch = member.collate([dataset[0]])
    assert batch["texts"] == ["one two three"] and batch["labels"].tolist() == [MELD.encode("happy")]
    assert batch["index"].tolist() == [0] and batch["ids"] == ["a"]


# ----------------------------------------------------------------------------- the endpoint client


class FakeChatServer:
    """A local chat-completions server answering from a script of actions:
    ``("ok", text)``, ``("status", code, headers)`` or ``("sleep", seconds)``."""

    def __init__(self, script):
        self.script = list(script)
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"time": time.monotonic(), "body": body, "auth": self.headers.get("Authorization"), "path": self.path})
                action = server.script.pop(0) if len(server.script) > 1 else server.script[0]
                try:
                    if action[0] == "sleep":
                        time.sleep(action[1])
                        action = ("ok", "late")
                    if action[0] == "ok":
                        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": action[1]}}]}).encode()
                        self.send_response(200)
                    else:
                        data = json.dumps({"error": {"message": f"scripted {action[1]}"}}).encode()
                        self.send_response(action[1])
                        for key, value in (action[2] if len(action) > 2 else {}).items():
                            self.send_header(key, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "sentence: wow"}]


def client_for(server, **settings) -> ChatCompletionsClient:
    defaults = {"api_key": "k-123", "timeout_s": 5.0, "max_retries": 3, "backoff_s": 0.01}
    return ChatCompletionsClient(server.url, "llama-70b", **{**defaults, **settings})


def test_endpoint_success_sends_the_request():
    with FakeChatServer([("ok", "Happy.")]) as server:
        client = client_for(server)
        assert client.chat(MESSAGES, temperature=0.7, top_p=0.7, max_tokens=8) == "Happy."
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer k-123"
    assert request["body"] == {"model": "llama-70b", "messages": MESSAGES, "temperature": 0.7, "top_p": 0.7, "max_tokens": 8}
    assert (client.requests, client.retries) == (1, 0)


def test_endpoint_honours_retry_after_on_429():
    waits = []
    with FakeChatServer([("status", 429, {"Retry-After": "0.05"}), ("ok", "sad")]) as server:
        client = client_for(server, sleep=lambda s: (waits.append(s), time.sleep(s)))
        assert client.chat(MESSAGES) == "sad"
    assert (client.requests, client.retries) == (2, 1)
    assert waits == [pytest.approx(0.05)]


def test_endpoint_retries_server_errors_with_backoff():
    waits = []
    with FakeChatServer([("status", 500), ("status", 503), ("ok", "fear")]) as server:
        client = client_for(server, sleep=waits.append)
        assert client.chat(MESSAGES) == "fear"
    assert client.retries == 2 and waits == [pytest.approx(0.01), pytest.approx(0.02)]


def test_endpoint_timeout_is_a_clear_error_after_max_retries():
    with FakeChatServer([("sleep", 0.6)]) as server:
        client = client_for(server, timeout_s=0.15, max_retries=1)
        with pytest.raises(EndpointError, match=r"no answer after 2 attempt\(s\).*within 0.15 s"):
            client.chat(MESSAGES)
    assert client.requests == 2


def test_endpoint_refused_key_names_the_variable():
    with FakeChatServer([("status", 401)]) as server:
        client = client_for(server, api_key=None)
        with pytest.raises(EndpointError, match=r"check the key in \$OPENAI_API_KEY \(\$OPENAI_API_KEY is not set\)"):
            client.chat(MESSAGES)
        assert client.requests == 1  # not retried
        with pytest.raises(EndpointError, match="HTTP 404.*model name 'llama-70b'"):
            server.script = [("status", 404)]
            client.chat(MESSAGES)


def test_endpoint_cannot_connect_is_clear():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = ChatCompletionsClient(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff_s=0.0)
    with pytest.raises(EndpointError, match="cannot connect"):
        client.chat(MESSAGES)


def test_endpoint_rate_limit_spaces_requests():
    with FakeChatServer([("ok", "happy")]) as server:
        client = client_for(server, requests_per_minute=1200)  # one request per 50 ms
        started = time.monotonic()
        replies = client.chat_many([MESSAGES] * 4, concurrency=4)
        elapsed = time.monotonic() - started
    assert replies == ["happy"] * 4
    assert elapsed >= 0.15 - 1e-3
    arrivals = sorted(r["time"] for r in server.requests)
    assert all(b - a >= 0.04 for a, b in zip(arrivals, arrivals[1:]))


def test_endpoint_url_forms():
    assert chat_completions_url("http://h:8000/v1/") == "http://h:8000/v1/chat/completions"
    assert chat_completions_url("https://h/v1/chat/completions") == "https://h/v1/chat/completions"
    with pytest.raises(ValueError, match="http"):
        chat_completions_url("h:8000/v1")


def test_endpoint_member_maps_replies(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "secret")
    with FakeChatServer([("ok", "Contempt."), ("ok", "I'd say anger"), ("ok", "no idea")]) as server:
        recipe = T1Recipe(model=T1Config(backend="endpoint", model="llama-70b", mode="generate", calibration="none",
                                         endpoint_url=server.url, concurrency=1))
        member = T1Member(recipe)
        model = member.build(MSP, pretrained=True)[0]
        assert isinstance(model, EndpointZeroShot) and not list(model.parameters())
        dataset = member.dataset([Utterance(id=f"u{i}", text=t) for i, t in enumerate(["a", "b", "c"])], None, train=False)
        logits = member.logits(model, member.collate([dataset[i] for i in range(3)]))
    assert [MSP.decode(i) for i in logits.argmax(dim=1).tolist()] == ["contempt", "angry", "neutral"]
    assert model.reply_stats()["unmapped"] == 1 and member.saved_state(model) == {}
    sent = server.requests[0]["body"]
    assert sent["messages"][1]["content"] == "sentence: a" and "contempt" in sent["messages"][0]["content"]
    assert server.requests[0]["auth"] == "Bearer secret"


def test_endpoint_needs_a_url(monkeypatch):
    monkeypatch.delenv("ABHINAYA_LLM_URL", raising=False)
    member = T1Member(T1Recipe(model=T1Config(backend="endpoint", mode="generate", calibration="none")))
    with pytest.raises(ValueError, match="ABHINAYA_LLM_URL"):
        member.build(MSP, pretrained=True)[0]


# ----------------------------------------------------------------------------- recipes


def test_meld_recipe_builds_with_a_tiny_model(tiny_llama_dir):
    recipe = load_recipe(RECIPES / "meld" / "t1.yaml", [f"model.model={tiny_llama_dir}"])
    assert isinstance(recipe, T1Recipe)
    assert (recipe.model.mode, recipe.model.calibration, recipe.model.backend) == ("constrained", "train_mean", "transformers")
    assert recipe.data.corpus == "meld" and LabelSet(recipe.data.labels) == MELD
    assert recipe.model.reply_template == "The emotion is {word}." and recipe.model.label_words["happy"] == "joy"
    model = T1Member(recipe).build(MELD, pretrained=True)[0]
    assert model.label_log_likelihoods(["wow"]).shape == (1, 7)
    assert "neutral, joy, surprise, anger, sadness, disgust, fear" in model.system_prompt
    assert load_recipe(RECIPES / "meld" / "t1.yaml").model.model == "smollm2"


def test_msp_recipe_is_the_paper_setting(monkeypatch):
    monkeypatch.setenv("ABHINAYA_LLM_URL", "http://127.0.0.1:9/v1")
    recipe = load_recipe(RECIPES / "msp_podcast" / "t1.yaml")
    config = recipe.model
    assert (config.backend, config.model, config.mode) == ("endpoint", "meta-llama/Llama-3.3-70B-Instruct", "generate")
    assert (config.temperature, config.top_p, config.user_template) == (0.7, 0.7, "sentence: {text}")
    assert LabelSet(recipe.data.labels) == MSP
    model = T1Member(recipe).build(MSP, pretrained=True)[0]  # nothing is sent
    assert model.client.url == "http://127.0.0.1:9/v1/chat/completions" and model.client.requests == 0
    assert "angry, sad, happy, surprise, fear, disgust, contempt, neutral" in model.system_prompt


# ----------------------------------------------------------------------------- through `abhinaya train`


def test_train_load_run_and_predict(tmp_path, tiny_llama_dir, capsys):
    from abhinaya.cli import main
    from abhinaya.manifest import read_manifest, write_manifest
    from abhinaya.predictions import read_predictions
    from abhinaya.runs import load_run
    from abhinaya.testing.dummies import make_dummy_meld
    from abhinaya.train.loop import train
    from abhinaya.weights.checkpoint import load_tensors

    root = make_dummy_meld(tmp_path / "meld", train_dialogues=4, dev_dialogues=2)
    recipe = load_recipe(
        RECIPES / "meld" / "t1.yaml",
        [f"data.root={root}", f"model.model={tiny_llama_dir}", "model.calibration_utterances=8", "train.progress=false"],
    )
    run = tmp_path / "run"
    summary = train(recipe, run, log=lambda message: None)
    assert summary["member"] == "t1"
    assert (run / "dev_predictions.csv").is_file()
    loaded = load_run(run)
    bias = loaded.model.calibration_bias
    assert bias.shape == (7,) and bool((bias != 0).all())
    assert set(load_tensors(run / "model.safetensors")) == {"calibration_bias"}  # no LLM weights in the run

    # `abhinaya predict` on the run: dev predictions again, a row without a transcript reported and skipped
    rows = [u for u in read_manifest(run / "data" / "splits.jsonl") if u.split == "dev"][:4]
    rows[1].text = None
    out = tmp_path / "pred.csv"
    capsys.readouterr()
    assert main(["predict", str(run), str(write_manifest(tmp_path / "dev.jsonl", rows)), "-o", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert rows[1].id in captured.out + captured.err
    table = read_predictions(out)
    assert sorted(table.ids) == sorted(u.id for i, u in enumerate(rows) if i != 1)
    dev = read_predictions(run / "dev_predictions.csv")
    assert [dev.labels[dev.ids.index(i)] for i in table.ids] == table.labels
