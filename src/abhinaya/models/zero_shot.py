"""A zero-shot instruction-tuned LLM that names the emotion of a transcript (the model of member T1).

The LLM gets a system message casting it as an emotion recogniser (the classes
of the label set listed) and the user message ``sentence: <transcript>``.
Nothing is trained. Two ways to turn the LLM into a classifier:

- ``mode: constrained`` (``ZeroShotLM``, a local causal LM): the log-likelihood
  of each class's label word as the assistant's reply (label word + end-of-turn
  token, or inside a ``reply_template`` such as "The emotion is {word}."),
  ``(B, C)`` logits with no parsing. ``calibration: train_mean`` subtracts the
  mean per-class log-likelihood over training transcripts, removing the LM's
  prior preference for some label words (a contextual calibration; saved with
  the run as ``calibration_bias``).
- ``mode: generate`` (``ZeroShotLM``, or ``EndpointZeroShot`` for an
  OpenAI-compatible endpoint, ``models/chat_endpoint.py``): the LLM answers
  freely (temperature / top-p as the paper: 0.7 / 0.7) and
  ``map_reply_to_label`` maps the reply to a class (the synonym table
  ``DEFAULT_SYNONYMS``, inflections); an unmappable reply falls back to
  ``fallback_label`` and is counted.

``build_zero_shot(config, label_set, ...)`` builds either from a ``ZeroShotConfig``.
"""

from __future__ import annotations

import copy
import inspect
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import torch

from abhinaya.data.text import pad_token_ids
from abhinaya.labels import LabelSet

logger = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = (
    "You are an emotion recognizer for written text. The user gives you one sentence; decide which single "
    "emotion it expresses, choosing from: {labels}. Reply with exactly one word from that list."
)
ENDPOINT_URL_ENV = "ABHINAYA_LLM_URL"
# Logit of the classes a free-text reply did not name (softmax of 0 vs -30: ~1e-13).
UNCHOSEN_LOGIT = -30.0
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Reply words -> canonical class (only classes of the model's label set are used).
DEFAULT_SYNONYMS: dict[str, str] = {
    **{w: "happy" for w in (
        "happy", "happiness", "happily", "joy", "joyful", "joyous", "glad", "cheerful", "delighted", "delight",
        "excited", "excitement", "pleased", "amused", "amusement", "elated", "elation",
    )},
    **{w: "angry" for w in (
        "angry", "anger", "angrily", "angered", "mad", "furious", "fury", "rage", "enraged", "annoyed", "annoyance",
        "irritated", "irritation", "frustrated", "frustration", "outraged", "hostile",
    )},
    **{w: "sad" for w in (
        "sad", "sadness", "sadly", "unhappy", "unhappiness", "sorrow", "sorrowful", "grief", "grieving", "depressed",
        "depression", "melancholy", "disappointed", "disappointment", "heartbroken", "upset",
    )},
    **{w: "surprise" for w in (
        "surprise", "surprised", "surprising", "astonished", "astonishment", "amazed", "amazement", "shocked",
        "shock", "startled",
    )},
    **{w: "fear" for w in (
        "fear", "fearful", "scared", "afraid", "frightened", "terrified", "terror", "anxious", "anxiety",
        "nervous", "worried", "worry", "panic", "panicked",
    )},
    **{w: "disgust" for w in ("disgust", "disgusted", "disgusting", "revulsion", "repulsed", "revolted", "gross")},
    **{w: "contempt" for w in ("contempt", "contemptuous", "scorn", "scornful", "disdain", "disdainful")},
    **{w: "neutral" for w in ("neutral", "neutrality", "none", "indifferent", "indifference")},
    **{w: "calm" for w in ("calm", "calmness", "calmly", "peaceful", "relaxed", "serene", "tranquil")},
    **{w: "boredom" for w in ("boredom", "bored", "boring")},
    # several words; matched before single words at the same position
    "no emotion": "neutral",
    "not emotional": "neutral",
}


# ----------------------------------------------------------------------------- configuration


@dataclass
class ZeroShotConfig:
    """The zero-shot LLM classifier (the ``model`` section of a T1 recipe).

    Attributes:
        backend: ``transformers`` (a local causal LM) or ``endpoint`` (an OpenAI-compatible server).
        model: transformers: a folder, an offline name (``smollm2``), a hub id already in the local
            cache, or a ``.gguf`` file; endpoint: the model name sent to the server.
        mode: ``constrained`` (label-word log-likelihoods; transformers only) or ``generate`` (free reply, mapped).
        system_prompt: the system message; ``{labels}`` becomes the label words, comma separated.
        user_template: the user message; ``{text}`` becomes the transcript.
        reply_template: the assistant's reply that is scored (constrained) or started (generate,
            transformers): ``{word}`` becomes the label word. The text before ``{word}`` is the same for
            every class, so it is put after the prompt and only the rest is scored (its likelihood is a
            constant per utterance, which the softmax over classes ignores).
        label_words: class -> the word the LLM should say for it (default: the class name).
        temperature / top_p: sampling of ``generate`` (0 temperature = greedy).
        max_new_tokens: reply length limit of ``generate``.
        calibration: ``none`` or ``train_mean`` (subtract the mean per-class log-likelihood over
            training transcripts; ``constrained`` only).
        calibration_utterances: at most this many training transcripts (a reproducible sample) for it.
        fallback_label: the class of an unmappable reply (default: neutral if a class, else the first).
        max_words: transcripts are cut to their first ``max_words`` words (by the member's dataset).
        dtype: weights of the transformers backend (float32, bfloat16, float16).
        reuse_prefix_cache: constrained scoring runs the shared system prompt once and each
            utterance's prompt once for all classes (key/value cache); off = one full forward per pair.
        endpoint_url: the server (``http://host:8000/v1``); default ``$ABHINAYA_LLM_URL``.
        api_key_env: the environment variable holding the API key (the key is never in a recipe).
        timeout_s / max_retries / requests_per_minute / concurrency: endpoint request handling.
    """

    backend: Literal["transformers", "endpoint"] = "transformers"
    model: str = "smollm2"
    mode: Literal["constrained", "generate"] = "constrained"
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    user_template: str = "sentence: {text}"
    reply_template: str = "{word}"
    label_words: dict[str, str] = field(default_factory=dict)
    temperature: float = 0.7
    top_p: float = 0.7
    max_new_tokens: int = 8
    calibration: Literal["none", "train_mean"] = "train_mean"
    calibration_utterances: int = 1000
    fallback_label: str | None = None
    max_words: int = 256
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    reuse_prefix_cache: bool = True
    endpoint_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    max_retries: int = 5
    requests_per_minute: float = 0.0
    concurrency: int = 4

    def __post_init__(self) -> None:
        if "{text}" not in self.user_template:
            raise ValueError(f"user_template {self.user_template!r} must contain {{text}}")
        if "{word}" not in self.reply_template:
            raise ValueError(f"reply_template {self.reply_template!r} must contain {{word}}")
        if self.backend == "endpoint" and self.reply_template != "{word}":
            raise ValueError("reply_template needs the transformers backend (an endpoint cannot start the reply)")
        if self.backend == "endpoint" and self.mode == "constrained":
            raise ValueError(
                "backend 'endpoint' supports only mode 'generate' (a chat endpoint returns text, not "
                "label-word likelihoods); set model.mode=generate"
            )
        if self.calibration != "none" and self.mode != "constrained":
            raise ValueError(
                f"calibration {self.calibration!r} needs mode 'constrained' (free replies have no likelihoods); "
                "set model.calibration=none"
            )
        if self.temperature < 0:
            raise ValueError(f"temperature must be 0 (greedy) or more, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        for name in ("max_new_tokens", "max_words", "calibration_utterances", "concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("timeout_s",):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_retries < 0 or self.requests_per_minute < 0:
            raise ValueError("max_retries and requests_per_minute must be 0 or more")
        empty = [k for k, v in self.label_words.items() if not str(v).strip()]
        if empty:
            raise ValueError(f"label_words gives an empty word for {empty}")


# ----------------------------------------------------------------------------- replies -> classes


def _words(text: str) -> list[str]:
    """Lower-case words of a reply, markdown, quotes and punctuation removed."""
    text = text.lower().replace("’", "'")
    return re.findall(r"[a-z]+", text)


def map_reply_to_label(
    reply: str | None,
    label_set: LabelSet | Sequence[str],
    synonyms: dict[str, str] | None = None,
    *,
    fallback: str | None = None,
) -> str | None:
    """The class a free-text reply names, or ``fallback`` when it names none.

    The reply is lower-cased and stripped of punctuation, quotes and markdown;
    its words are read in order and the first one that is a class name or a
    synonym of a class in ``label_set`` wins (two-word synonyms such as
    "no emotion" first at each position). ``synonyms`` maps words to classes
    (default ``DEFAULT_SYNONYMS``); words of classes outside the set are passed over.
    """
    classes = set(label_set)
    table = {k.lower(): v for k, v in (DEFAULT_SYNONYMS if synonyms is None else synonyms).items()}
    words = _words(reply or "")
    for i, word in enumerate(words):
        for candidate in ((f"{word} {words[i + 1]}",) if i + 1 < len(words) else ()) + (word,):
            if candidate in classes:
                return candidate
            mapped = table.get(candidate)
            if mapped is not None and mapped in classes:
                return mapped
    return fallback


def default_fallback(label_set: LabelSet, fallback: str | None) -> str:
    if fallback is not None:
        if fallback not in label_set:
            raise ValueError(f"model.fallback_label {fallback!r} is not a class of {list(label_set)}")
        return fallback
    return "neutral" if "neutral" in label_set else label_set.labels[0]


def _one_hot_logits(indices: Sequence[int], num_classes: int, device=None) -> torch.Tensor:
    """``(B, C)``: 0 at the chosen class, ``UNCHOSEN_LOGIT`` elsewhere."""
    logits = torch.full((len(indices), num_classes), UNCHOSEN_LOGIT, device=device)
    logits[torch.arange(len(indices)), torch.tensor(list(indices), dtype=torch.long)] = 0.0
    return logits


class _ReplyMapper:
    """Maps replies to class indices, counting (and logging a few) unmappable ones."""

    def __init__(self, label_set: LabelSet, config: ZeroShotConfig):
        self.label_set = label_set
        self.fallback = default_fallback(label_set, config.fallback_label)
        self.synonyms = dict(DEFAULT_SYNONYMS)
        for label, word in config.label_words.items():
            if label not in label_set:
                raise ValueError(f"model.label_words names {label!r}, which is not a class of {list(label_set)}")
            self.synonyms[str(word).strip().lower()] = label
        self.replies = 0
        self.unmapped = 0

    def __call__(self, replies: Sequence[str], ids: Sequence[str] | None) -> list[int]:
        indices = []
        for row, reply in enumerate(replies):
            label = map_reply_to_label(reply, self.label_set, self.synonyms)
            self.replies += 1
            if label is None:
                self.unmapped += 1
                name = ids[row] if ids is not None else f"row {row}"
                log = logger.warning if self.unmapped <= 10 else logger.debug
                log(
                    "%s: reply %r names no class of %s; counted as %s",
                    name, reply[:80], list(self.label_set), self.fallback,
                )
                label = self.fallback
            indices.append(self.label_set.encode(label))
        return indices

    def stats(self) -> dict[str, int]:
        return {"replies": self.replies, "unmapped": self.unmapped}


# ----------------------------------------------------------------------------- prompts


def _label_words(label_set: LabelSet, config: ZeroShotConfig) -> list[str]:
    unknown = sorted(set(config.label_words) - set(label_set))
    if unknown:
        raise ValueError(f"model.label_words names {unknown}, not classes of {list(label_set)}")
    return [str(config.label_words.get(label, label)).strip() for label in label_set]


def chat_messages(text: str, system_prompt: str, user_template: str) -> list[dict[str, str]]:
    """The conversation for one transcript: ``[system, user]``."""
    return [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": user_template.replace("{text}", text)},
    ]




# ----------------------------------------------------------------------------- transformers backend


def _cache_keyword(module: torch.nn.Module) -> str:
    """The name a transformers model's forward gives its key/value cache (``cache`` from 5.2x on)."""
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def _output_cache(output):
    found = output.get("cache")
    return found if found is not None else output.get("past_key_values")


class ZeroShotLM(torch.nn.Module):
    """A local causal LM as a zero-shot classifier over ``label_set``.

    ``forward(texts, ids=None)`` -> ``(B, C)`` logits: the label words'
    log-likelihoods minus ``calibration_bias`` (constrained), or 0 for the class
    the generated reply names and -30 elsewhere (generate).
    """

    def __init__(self, lm: torch.nn.Module, tokenizer, label_set: LabelSet, config: ZeroShotConfig, *, seed: int = 0):
        super().__init__()
        self.lm = lm.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.label_set = label_set
        self.config = config
        self.seed = seed
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"model {config.model!r}: its tokenizer has no chat template; T1 needs an instruction-tuned model"
            )
        self.label_words = _label_words(label_set, config)
        self.system_prompt = config.system_prompt.replace("{labels}", ", ".join(self.label_words))
        self.mapper = _ReplyMapper(label_set, config)
        self.register_buffer("calibration_bias", torch.zeros(len(label_set)))
        self.end_ids = self._end_token_ids()
        replies = [self._reply_token_ids(config.reply_template.replace("{word}", w)) for w in self.label_words]
        # the tokens every reply starts with go after the prompt; each class scores the rest
        shared = 0
        while shared < min(len(r) for r in replies) - 1 and len({r[shared] for r in replies}) == 1:
            shared += 1
        self.reply_prefix_ids = replies[0][:shared]
        self.reply_ids = [reply[shared:] for reply in replies]
        self.prefix_ids = self._shared_prefix_ids()
        self._cache_kw = _cache_keyword(self.lm)
        self._prefix_cache = None
        self._prefix_key = None

    # ---- prompts and tokens
    def prompt_text(self, text: str, reply: str | None = None) -> str:
        """The chat prompt for ``text`` (ending where the assistant answers), or with ``reply`` the whole exchange."""
        messages = chat_messages(text, self.system_prompt, self.config.user_template)
        if reply is not None:
            messages.append({"role": "assistant", "content": reply})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=reply is None)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, text: str) -> list[int]:
        """Tokens of the chat prompt for ``text`` (no reply)."""
        return self.encode(self.prompt_text(text))

    def scoring_ids(self, text: str) -> list[int]:
        """The prompt followed by the reply's class-independent start: what each label word follows."""
        return self.prompt_ids(text) + self.reply_prefix_ids

    def _end_token_ids(self) -> set[int]:
        ends = set()
        for source in (getattr(self.lm, "generation_config", None), getattr(self.lm, "config", None)):
            value = getattr(source, "eos_token_id", None) if source is not None else None
            if value is not None:
                ends |= set(value) if isinstance(value, (list, tuple)) else {int(value)}
        if self.tokenizer.eos_token_id is not None:
            ends.add(int(self.tokenizer.eos_token_id))
        return ends

    def _reply_token_ids(self, word: str, probe: str = "this is a sentence") -> list[int]:
        """Tokens of ``word`` as the assistant's whole reply, up to and including the end-of-turn token.

        Taken as the suffix of the tokenised exchange after the tokenised
        prompt, so merges at the boundary are those the model sees.
        """
        prompt = self.encode(self.prompt_text(probe))
        full = self.encode(self.prompt_text(probe, reply=word))
        if full[: len(prompt)] != prompt:
            raise ValueError(
                f"model {self.config.model!r}: its chat template tokenises the prompt differently once a reply "
                f"follows (label word {word!r}); constrained scoring cannot use it, use mode 'generate'"
            )
        suffix = full[len(prompt) :]
        for position, token in enumerate(suffix):
            if token in self.end_ids:
                suffix = suffix[: position + 1]
                break
        if not suffix:
            raise ValueError(f"label word {word!r} gives an empty reply with model {self.config.model!r}")
        return suffix

    def _shared_prefix_ids(self) -> list[int]:
        """The prompt tokens every utterance shares (the system turn), cut after a
        special token so that no transcript can change how they are tokenised."""
        first, second = self.prompt_ids("a b c"), self.prompt_ids("x y z")
        common = 0
        while common < min(len(first), len(second)) and first[common] == second[common]:
            common += 1
        special = set(self.tokenizer.all_special_ids)
        cut = max((i + 1 for i in range(common) if first[i] in special), default=0)
        return first[:cut]

    def set_calibration(self, bias: torch.Tensor) -> None:
        """Store the per-class bias ``(C,)`` subtracted from the log-likelihoods."""
        bias = torch.as_tensor(bias, dtype=self.calibration_bias.dtype).reshape(-1)
        if bias.shape != self.calibration_bias.shape:
            raise ValueError(f"calibration bias has {bias.numel()} values, the model has {len(self.label_set)} classes")
        self.calibration_bias.copy_(bias.to(self.calibration_bias.device))

    def fit_calibration(self, texts: Sequence[str], batch_size: int, *, progress: bool = False) -> None:
        """Set ``calibration_bias`` to the mean label-word log-likelihood ``(C,)`` over ``texts``
        (scored ``batch_size`` at a time, in the order given)."""
        if not texts:
            raise ValueError("calibration needs at least one transcript")
        from tqdm.auto import tqdm

        total = torch.zeros(len(self.label_set), dtype=torch.float64)
        batches = range(0, len(texts), batch_size)
        for start in tqdm(batches, desc="calibrate", disable=None if progress else True, leave=False):
            total += self.label_log_likelihoods(texts[start : start + batch_size]).double().sum(dim=0).cpu()
        self.set_calibration((total / len(texts)).float())

    def reply_stats(self) -> dict[str, int]:
        return self.mapper.stats()

    # ---- forward
    @property
    def device(self) -> torch.device:
        return self.calibration_bias.device

    def forward(self, texts: Sequence[str], ids: Sequence[str] | None = None) -> torch.Tensor:
        if self.config.mode == "constrained":
            return self.label_log_likelihoods(texts) - self.calibration_bias
        replies = self.generate_replies(texts)
        return _one_hot_logits(self.mapper(replies, ids), len(self.label_set), device=self.device)

    def label_log_likelihoods(self, texts: Sequence[str]) -> torch.Tensor:
        """``(B, C)``: log p(label word c + end of turn | chat prompt of text b), summed over reply tokens
        (with a ``reply_template``: given the prompt and the reply's class-independent start)."""
        prompts = [self.scoring_ids(text) for text in texts]
        with torch.inference_mode():
            if self.config.reuse_prefix_cache:
                return self._scores_with_cache(prompts).float()
            return self._scores_plain(prompts).float()

    def _pad(self, rows: Sequence[Sequence[int]], width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded token lists on the model's device: ids ``(N, T)`` long and mask ``(N, T)`` long."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids, mask = pad_token_ids(rows, pad, width=width)
        return ids.to(self.device), mask.to(self.device)

    def _scores_plain(self, prompts: list[list[int]]) -> torch.Tensor:
        """One forward over every (utterance, class) sequence prompt + reply."""
        C = len(self.reply_ids)
        rows = [prompt + reply for prompt in prompts for reply in self.reply_ids]
        ids, mask = self._pad(rows)
        logprobs = torch.log_softmax(self.lm(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
        scores = torch.zeros(len(rows), device=self.device)
        for r, (prompt, reply) in enumerate(((p, rep) for p in prompts for rep in self.reply_ids)):
            positions = torch.arange(len(prompt) - 1, len(prompt) + len(reply) - 1, device=self.device)
            targets = torch.tensor(reply, dtype=torch.long, device=self.device)
            scores[r] = logprobs[r, positions, targets].sum()
        return scores.view(len(prompts), C)

    def _prefix(self):
        """The key/value cache of the shared prefix ``(1, Lp)``, computed once per device and dtype."""
        key = (self.device, next(self.lm.parameters()).dtype)
        if self._prefix_cache is None or self._prefix_key != key:
            ids = torch.tensor([self.prefix_ids], dtype=torch.long, device=self.device)
            output = self.lm.get_decoder()(input_ids=ids, use_cache=True)
            self._prefix_cache, self._prefix_key = _output_cache(output), key
        return self._prefix_cache

    def _scores_with_cache(self, prompts: list[list[int]]) -> torch.Tensor:
        """The same scores with shared work: the system prefix runs once (cached),
        each utterance's prompt once, and only the reply tokens run per class."""
        B, C = len(prompts), len(self.reply_ids)
        Lp = len(self.prefix_ids)
        for prompt in prompts:
            if prompt[:Lp] != self.prefix_ids:  # cannot happen: the prefix ends with a special token
                raise RuntimeError("a prompt does not start with the shared system prefix")
        users = [prompt[Lp:] for prompt in prompts]
        lengths = torch.tensor([len(u) for u in users], device=self.device)
        ids, mask = self._pad(users)
        U = ids.shape[1]
        cache = None
        if Lp:
            cache = copy.deepcopy(self._prefix())
            cache.batch_repeat_interleave(B)
        full_mask = torch.cat([torch.ones(B, Lp, dtype=torch.long, device=self.device), mask], dim=1)
        positions = (Lp + torch.arange(U, device=self.device)).unsqueeze(0).expand(B, U)
        # Stage 1: the utterance prompts (right-padded), hidden state at each one's last token.
        output = self.lm.get_decoder()(
            input_ids=ids, attention_mask=full_mask, position_ids=positions, use_cache=True, **{self._cache_kw: cache}
        )
        last = output.last_hidden_state[torch.arange(B, device=self.device), lengths - 1]
        first_logprobs = torch.log_softmax(self.lm.get_output_embeddings()(last).float(), dim=-1)  # (B, V)
        first_tokens = torch.tensor([reply[0] for reply in self.reply_ids], device=self.device)
        scores = first_logprobs[:, first_tokens]  # (B, C)
        R = max(len(reply) for reply in self.reply_ids)
        if R == 1:
            return scores
        # Stage 2: every class's reply after every prompt (cache repeated C times); the
        # reply tokens but the last are the inputs, predicting reply tokens 1..
        cache = _output_cache(output)
        cache.batch_repeat_interleave(C)
        inputs, reply_mask = self._pad([reply[:-1] for reply in self.reply_ids], width=R - 1)  # (C, R-1)
        inputs, reply_mask = inputs.repeat(B, 1), reply_mask.repeat(B, 1)  # (B*C, R-1)
        stage_mask = torch.cat([full_mask.repeat_interleave(C, dim=0), reply_mask], dim=1)
        reply_positions = (Lp + lengths).repeat_interleave(C).unsqueeze(1) + torch.arange(R - 1, device=self.device)
        logits = self.lm(
            input_ids=inputs, attention_mask=stage_mask, position_ids=reply_positions, use_cache=True,
            **{self._cache_kw: cache},
        ).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)  # (B*C, R-1, V)
        targets, target_mask = self._pad([reply[1:] for reply in self.reply_ids], width=R - 1)  # (C, R-1)
        rest = logprobs.gather(-1, targets.repeat(B, 1).unsqueeze(-1)).squeeze(-1)  # (B*C, R-1)
        rest = (rest * target_mask.repeat(B, 1)).sum(dim=1).view(B, C)
        return scores + rest

    def generate_replies(self, texts: Sequence[str]) -> list[str]:
        """Free replies (decoded, special tokens dropped), one per text; a ``reply_template``'s
        start is already given (and is not part of the returned reply)."""
        prompts = [self.scoring_ids(text) for text in texts]
        pad = self.tokenizer.pad_token_id
        ids, mask = pad_token_ids(prompts, pad, side="left")  # every prompt ends where the reply starts
        width = ids.shape[1]
        sample = self.config.temperature > 0
        settings: dict[str, Any] = {"max_new_tokens": self.config.max_new_tokens, "do_sample": sample}
        if sample:
            settings.update(temperature=self.config.temperature, top_p=self.config.top_p, top_k=0)
        cuda = []  # the CUDA generators fork_rng must save and restore
        if self.device.type == "cuda":
            cuda = [self.device.index if self.device.index is not None else torch.cuda.current_device()]
        with torch.inference_mode(), torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.seed)
            output = self.lm.generate(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device), pad_token_id=int(pad),
                eos_token_id=sorted(self.end_ids), **settings,
            )
        new = output[:, width:]
        return [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in new.tolist()]


# ----------------------------------------------------------------------------- endpoint backend


class EndpointZeroShot(torch.nn.Module):
    """An OpenAI-compatible chat endpoint as a zero-shot classifier (free replies
    mapped to classes). No parameters: ``forward(texts, ids)`` -> ``(B, C)`` logits."""

    def __init__(self, client, label_set: LabelSet, config: ZeroShotConfig):
        super().__init__()
        self.client = client
        self.label_set = label_set
        self.config = config
        self.label_words = _label_words(label_set, config)
        self.system_prompt = config.system_prompt.replace("{labels}", ", ".join(self.label_words))
        self.mapper = _ReplyMapper(label_set, config)
        self.register_buffer("_device_probe", torch.zeros(0), persistent=False)

    def replies(self, texts: Sequence[str]) -> list[str]:
        conversations = [chat_messages(text, self.system_prompt, self.config.user_template) for text in texts]
        return self.client.chat_many(
            conversations,
            concurrency=self.config.concurrency,
            temperature=self.config.temperature,
            top_p=self.config.top_p,
            max_tokens=self.config.max_new_tokens,
        )

    def reply_stats(self) -> dict[str, int]:
        return {**self.mapper.stats(), "requests": self.client.requests, "retries": self.client.retries}

    def forward(self, texts: Sequence[str], ids: Sequence[str] | None = None) -> torch.Tensor:
        indices = self.mapper(self.replies(texts), ids)
        return _one_hot_logits(indices, len(self.label_set), device=self._device_probe.device)


def build_endpoint_client(config: ZeroShotConfig):
    """The chat-completions client of an endpoint recipe (nothing is sent yet)."""
    from abhinaya.models.chat_endpoint import ChatCompletionsClient

    url = config.endpoint_url or os.environ.get(ENDPOINT_URL_ENV)
    if not url:
        raise ValueError(
            f"backend 'endpoint' needs the server's URL: set model.endpoint_url or ${ENDPOINT_URL_ENV} "
            "(e.g. http://localhost:8000/v1)"
        )
    return ChatCompletionsClient(
        url,
        config.model,
        api_key=os.environ.get(config.api_key_env) or None,
        api_key_env=config.api_key_env,
        timeout_s=config.timeout_s,
        max_retries=config.max_retries,
        requests_per_minute=config.requests_per_minute,
    )




def build_zero_shot(
    config: ZeroShotConfig, label_set: LabelSet, *, tokenizer=None, pretrained: bool = True, seed: int = 0
) -> ZeroShotLM | EndpointZeroShot:
    """The classifier ``config`` describes over ``label_set``: an ``EndpointZeroShot`` (nothing is sent yet) or a
    ``ZeroShotLM`` around the causal LM ``config.model`` with its pretrained weights (``pretrained``) or its
    architecture with random weights (tests). ``tokenizer``: the LM's, when already loaded."""
    default_fallback(label_set, config.fallback_label)
    _label_words(label_set, config)
    if config.backend == "endpoint":
        return EndpointZeroShot(build_endpoint_client(config), label_set, config)
    from abhinaya.models.llm import causal_lm_from_config
    from abhinaya.weights.llm import load_causal_lm, load_tokenizer

    dtype = _DTYPES[config.dtype]
    lm = load_causal_lm(config.model, dtype=dtype) if pretrained else causal_lm_from_config(config.model, dtype=dtype)
    if tokenizer is None:
        tokenizer = load_tokenizer(config.model)
    return ZeroShotLM(lm, tokenizer, label_set, config, seed=seed)


__all__ = [
    "DEFAULT_SYNONYMS",
    "DEFAULT_SYSTEM_PROMPT",
    "ENDPOINT_URL_ENV",
    "UNCHOSEN_LOGIT",
    "EndpointZeroShot",
    "ZeroShotConfig",
    "ZeroShotLM",
    "build_endpoint_client",
    "build_zero_shot",
    "chat_messages",
    "default_fallback",
    "map_reply_to_label",
]
