"""Whisper transcripts for the ``text`` field of a manifest.

Two backends decode the same Whisper checkpoints greedily (one beam, no
sampling):

- ``transformers``: ``WhisperForConditionalGeneration`` on a transformers
  folder (``"whisper-base"`` is the prepared offline copy, any local folder
  works);
- ``ctranslate2``: ``ctranslate2.models.Whisper`` on a CTranslate2 folder
  (``model.bin`` + ``tokenizer.json``; ``"whisper-base"`` maps to the prepared
  ``"whisper-base-ct2"``), the fast path on CPU.

Whisper reads 30 s of audio at a time (80 x 3000 log-mel frames). A longer
utterance is cut into consecutive 30 s windows (``long_form="windows"``),
each window is transcribed and the texts are joined with a space; with
``long_form="first30"`` only its first 30 s are read. Windows are decoded in
batches of similar length. An utterance whose audio cannot be loaded or whose
decoding fails is reported by id with the reason and gets ``None``; the job
goes on.

``transcribe_manifest`` fills a manifest's empty ``text`` fields, keeps the
ones already filled (so an interrupted run resumes where it stopped) and
rewrites the output atomically every few batches.

``word_error_rate`` scores transcripts against references after a simple
normalisation (lower case, punctuation removed).
"""

from __future__ import annotations

import json
import os
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from abhinaya.audio import DEFAULT_SAMPLE_RATE, load_audio
from abhinaya.manifest import Utterance, read_manifest, write_manifest

BACKENDS = ("transformers", "ctranslate2")
LONG_FORM_MODES = ("windows", "first30")
TASKS = ("transcribe", "translate")
WINDOW_SECONDS = 30.0
# A last window shorter than this (seconds) holds no word; it is dropped rather
# than given to Whisper, which tends to invent text for near-empty input.
MIN_WINDOW_SECONDS = 0.2
# Whisper's decoder context (tokens, prompt included) for every released size.
# CTranslate2 does not expose it, so its generation length is capped by this.
WHISPER_TEXT_POSITIONS = 448
# Windows loaded ahead of decoding, in batches: bounds memory (<= 30 s each)
# while leaving enough windows to sort into batches of similar length.
_BATCHES_PER_CHUNK = 16

ResultCallback = Callable[[str, "str | None", "str | None"], None]


class TranscriptionError(RuntimeError):
    """A transcription backend that cannot be set up (missing package, bad model folder)."""


@dataclass
class TranscriptionConfig:
    """How utterances are transcribed.

    ``model``: offline name (``"whisper-base"``) or a local folder; for the
    ctranslate2 backend a folder holding ``model.bin`` (``"whisper-base"`` is
    mapped to ``"whisper-base-ct2"``). ``language``: ``None`` detects it per
    30 s window, a code (``"en"``, ``"de"``) forces it. ``max_new_tokens``:
    text tokens per window. ``device``: ``None`` = CUDA when available, else
    CPU. ``compute_type`` and ``threads`` (0 = every core) only concern the
    ctranslate2 backend; int8 gave the same RAVDESS transcripts as float32 and
    ran about 1.1x faster on CPU (benchmarks/transcribe.py).
    """

    model: str = "whisper-base"
    backend: str = "transformers"
    language: str | None = None
    task: str = "transcribe"
    batch_size: int = 8
    max_new_tokens: int = 128
    long_form: str = "windows"
    device: str | None = None
    compute_type: str = "int8"
    threads: int = 0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown transcription backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.long_form not in LONG_FORM_MODES:
            raise ValueError(f"long_form must be one of {', '.join(LONG_FORM_MODES)}, got {self.long_form!r}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.threads < 0:
            raise ValueError(f"threads must be 0 (every core) or more, got {self.threads}")
        if self.language is not None:
            language = self.language.strip().lower()
            self.language = None if language in ("", "auto", "detect") else language


# ----------------------------------------------------------------------------- text and WER


def normalize_text(text: str) -> str:
    """Lower case, apostrophes removed, other punctuation and symbols turned
    into spaces, whitespace collapsed: ``"Kids are talking by the door."`` ->
    ``"kids are talking by the door"``."""
    pieces = []
    for char in unicodedata.normalize("NFC", text.lower()):
        if char in "'’`´":
            continue
        category = unicodedata.category(char)
        pieces.append(" " if category[0] in "PSZC" else char)
    return " ".join("".join(pieces).split())


def _edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp_word in enumerate(hypothesis, start=1):
            current[j] = min(
                previous[j] + 1,  # deletion
                current[j - 1] + 1,  # insertion
                previous[j - 1] + (ref_word != hyp_word),  # substitution or match
            )
        previous = current
    return previous[-1]


def word_error_rate(
    references: str | Sequence[str], hypotheses: str | Sequence[str | None], *, normalize: bool = True
) -> float:
    """Corpus word error rate: total word edits / total reference words.

    Accepts one string each or two equally long sequences. Texts are
    normalised with ``normalize_text`` unless ``normalize=False``; a ``None``
    hypothesis (a failed transcript) counts as empty. Raises ``ValueError``
    when the lengths differ or the references hold no word.
    """
    if isinstance(references, str):
        references = [references]
    if isinstance(hypotheses, str) or hypotheses is None:
        hypotheses = [hypotheses]
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} reference(s) but {len(hypotheses)} hypothesis/-es")
    prepare = normalize_text if normalize else (lambda text: text)
    errors = words = 0
    for reference, hypothesis in zip(references, hypotheses):
        ref_words = prepare(reference).split()
        hyp_words = prepare(hypothesis or "").split()
        errors += _edit_distance(ref_words, hyp_words)
        words += len(ref_words)
    if words == 0:
        raise ValueError("the references hold no words; the word error rate is undefined")
    return errors / words


# ----------------------------------------------------------------------------- windows


def split_windows(
    wave: np.ndarray,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    *,
    long_form: str = "windows",
    window_seconds: float = WINDOW_SECONDS,
    min_window_seconds: float = MIN_WINDOW_SECONDS,
) -> list[np.ndarray]:
    """Cut a waveform (samples,) into consecutive windows of at most
    ``window_seconds`` (views, no copy). ``long_form="first30"`` keeps only the
    first window. A last window shorter than ``min_window_seconds`` is dropped
    (the first is always kept). A 65 s wave gives windows of 30, 30 and 5 s.
    """
    if long_form not in LONG_FORM_MODES:
        raise ValueError(f"long_form must be one of {', '.join(LONG_FORM_MODES)}, got {long_form!r}")
    size = int(round(window_seconds * sample_rate))
    if size < 1:
        raise ValueError(f"window_seconds * sample_rate must be at least one sample, got {window_seconds} s")
    windows = [wave[start : start + size] for start in range(0, max(len(wave), 1), size)]
    if long_form == "first30":
        return windows[:1]
    if len(windows) > 1 and len(windows[-1]) < min_window_seconds * sample_rate:
        windows.pop()
    return windows


# ----------------------------------------------------------------------------- backends


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _language_code(language: str) -> str:
    """``"en"``, ``"english"`` or ``"<|en|>"`` -> ``"en"``."""
    from transformers.models.whisper.tokenization_whisper import (
        LANGUAGES,
        TO_LANGUAGE_CODE,
    )

    language = language.strip().lower()
    if language.startswith("<|") and language.endswith("|>"):
        language = language[2:-2]
    if language in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[language]
    if language in LANGUAGES:
        return language
    raise ValueError(f"unknown language {language!r}; give a Whisper language code such as 'en' or 'de'")


def _text_from_ids(tokenizer_decode: Callable[[list[int]], str], ids: Sequence[int], first_special: int) -> str:
    """Decode generated ids; Whisper's special and timestamp tokens all sit at
    or above ``<|endoftext|>`` and are dropped first."""
    return tokenizer_decode([int(t) for t in ids if int(t) < first_special]).strip()


class _TransformersWhisper:
    """Greedy Whisper decoding with transformers' ``generate``."""

    def __init__(self, config: TranscriptionConfig):
        try:
            import torch
            from transformers import WhisperForConditionalGeneration, WhisperProcessor
        except ImportError as err:
            raise TranscriptionError(
                f"the transformers backend needs the 'speech' extra: pip install 'abhinaya[speech]' ({err})"
            ) from None
        from abhinaya.weights.cache import resolve_model_path

        folder = resolve_model_path(config.model)
        self.device = torch.device(config.device or _default_device())
        try:
            self.processor = WhisperProcessor.from_pretrained(folder)
            self.model = WhisperForConditionalGeneration.from_pretrained(folder).eval().to(self.device)
        except (OSError, ValueError) as err:
            raise TranscriptionError(f"{folder}: not a transformers Whisper folder ({err})") from None
        generation = self.model.generation_config
        self.language = _language_code(config.language) if config.language is not None else None
        self.task = config.task
        if getattr(generation, "is_multilingual", True):
            lang_to_id = getattr(generation, "lang_to_id", None) or {}
            if self.language is not None and f"<|{self.language}|>" not in lang_to_id:
                raise ValueError(f"{folder}: the model has no language token <|{self.language}|>")
        else:  # English-only: the prompt holds neither a language nor a task
            if self.language not in (None, "en"):
                raise ValueError(f"{folder}: an English-only model cannot transcribe language {self.language!r}")
            self.language = self.task = None
        self.first_special = int(generation.eos_token_id)
        # Prompt: <|startoftranscript|> <|lang|> <|task|> <|notimestamps|>.
        self.max_new_tokens = max(1, min(config.max_new_tokens, self.model.config.max_target_positions - 4))
        self.name = f"transformers:{folder.name}"

    def transcribe(self, waves: Sequence[np.ndarray]) -> list[str]:
        """Texts of a batch of windows (each (samples,) at 16 kHz, <= 30 s)."""
        import torch
        from transformers.utils import logging as hf_logging

        features = self.processor.feature_extractor(
            list(waves), sampling_rate=DEFAULT_SAMPLE_RATE, return_tensors="pt"
        ).input_features.to(self.device, self.model.dtype)  # (batch, 80, 3000)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # generate's notes about its own stored settings are not the user's concern
        try:
            with torch.inference_mode():
                # Encoded once here: given features, generate would run the encoder again to detect the language.
                encoded = self.model.get_encoder()(features)
                sequences = self.model.generate(
                    encoder_outputs=encoded,
                    language=self.language,
                    task=self.task,
                    num_beams=1,
                    do_sample=False,
                    # Whisper's generate counts max_length after the prompt tokens (and caps it at the
                    # decoder's context); max_new_tokens would clash with the stored max_length.
                    max_length=self.max_new_tokens,
                    return_timestamps=False,
                )
        finally:
            hf_logging.set_verbosity(verbosity)
        if not isinstance(sequences, torch.Tensor):  # a ModelOutput when dict outputs are configured
            sequences = sequences["sequences"]
        decode = self.processor.tokenizer.decode
        return [_text_from_ids(decode, row.tolist(), self.first_special) for row in sequences]


def ctranslate2_model_folder(model: str | Path) -> Path:
    """The CTranslate2 folder for ``model``: a folder holding ``model.bin`` is
    used as is; an offline name ``X`` means ``X-ct2`` when that name is known
    (``"whisper-base"`` -> ``"whisper-base-ct2"``)."""
    from abhinaya.weights.cache import OFFLINE_MODEL_FOLDERS, resolve_model_path

    name = str(model)
    if not Path(name).expanduser().exists() and f"{name}-ct2" in OFFLINE_MODEL_FOLDERS:
        name = f"{name}-ct2"
    folder = resolve_model_path(name)
    if not (folder / "model.bin").is_file():
        raise TranscriptionError(
            f"{folder}: no model.bin here; the ctranslate2 backend needs a CTranslate2 Whisper folder "
            "(e.g. whisper-base-ct2)"
        )
    if not (folder / "tokenizer.json").is_file():
        raise TranscriptionError(f"{folder}: tokenizer.json is missing; it is needed to turn token ids into text")
    return folder


class _CTranslate2Whisper:
    """Greedy Whisper decoding with CTranslate2."""

    def __init__(self, config: TranscriptionConfig):
        try:
            import ctranslate2
            import tokenizers
            from transformers import WhisperFeatureExtractor
        except ImportError as err:
            raise TranscriptionError(
                f"the ctranslate2 backend needs the 'asr' and 'speech' extras: pip install 'abhinaya[asr,speech]' ({err})"
            ) from None
        folder = ctranslate2_model_folder(config.model)
        self._ctranslate2 = ctranslate2
        device = config.device or ("cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu")
        device_type, _, index = device.partition(":")
        threads = config.threads or len(os.sched_getaffinity(0))
        try:
            self.model = ctranslate2.models.Whisper(
                str(folder),
                device=device_type,
                device_index=int(index or 0),
                compute_type=config.compute_type,
                intra_threads=threads,
            )
        except (RuntimeError, ValueError) as err:
            raise TranscriptionError(f"{folder}: CTranslate2 cannot load this model ({err})") from None
        self.tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.extractor = WhisperFeatureExtractor(feature_size=self.model.n_mels, sampling_rate=DEFAULT_SAMPLE_RATE)
        self.first_special = self._token_id("<|endoftext|>", folder)
        for token in ("<|startoftranscript|>", f"<|{config.task}|>", "<|notimestamps|>"):
            self._token_id(token, folder)
        # Prompt: <|startoftranscript|> <|lang|> <|task|> <|notimestamps|>; the language is detected
        # per window when not given. English-only models take <|startoftranscript|> <|notimestamps|>.
        self.multilingual = bool(self.model.is_multilingual)
        self.task_token = f"<|{config.task}|>"
        self.language_token: str | None = None
        language = _language_code(config.language) if config.language is not None else None
        if self.multilingual and language is not None:
            self.language_token = f"<|{language}|>"
            if self.language_token not in self._languages(folder):
                raise ValueError(f"{folder}: the model has no language token {self.language_token}")
        elif not self.multilingual and language not in (None, "en"):
            raise ValueError(f"{folder}: an English-only model cannot transcribe language {language!r}")
        # CTranslate2 generates at most max_length / 2 text tokens (Whisper's sample_len rule).
        new_tokens = min(config.max_new_tokens, WHISPER_TEXT_POSITIONS - 4)
        self.max_length = 2 * new_tokens
        self.name = f"ctranslate2:{folder.name}:{self.model.compute_type}"

    def _token_id(self, token: str, folder: Path) -> int:
        found = self.tokenizer.token_to_id(token)
        if found is None:
            raise TranscriptionError(f"{folder}/tokenizer.json: token {token} is missing; not a Whisper tokenizer")
        return int(found)

    def _languages(self, folder: Path) -> set[str]:
        """Language tokens of the model: ``lang_ids`` of its config.json, else every ``<|xx|>`` token."""
        config_file = folder / "config.json"
        lang_ids: list[int] = []
        if config_file.is_file():
            try:
                lang_ids = [int(t) for t in json.loads(config_file.read_text(encoding="utf-8")).get("lang_ids", [])]
            except (OSError, ValueError, TypeError):
                lang_ids = []
        if lang_ids:
            return {self.tokenizer.id_to_token(t) for t in lang_ids}
        vocab = self.tokenizer.get_vocab(with_added_tokens=True)
        return {token for token in vocab if token.startswith("<|") and token[2:-2].isalpha() and len(token) <= 8}

    def transcribe(self, waves: Sequence[np.ndarray]) -> list[str]:
        """Texts of a batch of windows (each (samples,) at 16 kHz, <= 30 s)."""
        features = self.extractor(list(waves), sampling_rate=DEFAULT_SAMPLE_RATE, return_tensors="np").input_features
        features = self._ctranslate2.StorageView.from_array(np.ascontiguousarray(features, dtype=np.float32))
        if not self.multilingual:
            prompts = [["<|startoftranscript|>", "<|notimestamps|>"]] * len(waves)
        else:
            if self.language_token is not None:
                languages = [self.language_token] * len(waves)
            else:
                # detect_language runs the encoder too; its output is passed on to avoid a second pass.
                features = self.model.encode(features, to_cpu=False)
                languages = [ranked[0][0] for ranked in self.model.detect_language(features)]
            prompts = [["<|startoftranscript|>", language, self.task_token, "<|notimestamps|>"] for language in languages]
        results = self.model.generate(
            features,
            prompts,
            beam_size=1,
            sampling_topk=1,
            max_length=self.max_length,
            return_scores=False,
        )
        return [_text_from_ids(self.tokenizer.decode, result.sequences_ids[0], self.first_special) for result in results]


def load_transcriber(config: TranscriptionConfig):
    """The backend of ``config`` with its model loaded; ``.transcribe(waves) -> texts``."""
    if config.backend == "ctranslate2":
        return _CTranslate2Whisper(config)
    return _TransformersWhisper(config)


# ----------------------------------------------------------------------------- utterances


@dataclass
class _Pending:
    """An utterance whose windows are being decoded."""

    utt: Utterance
    texts: list[str | None]
    left: int
    error: str | None = None


def _chunks(
    utterances: Sequence[Utterance], config: TranscriptionConfig, fail: Callable[[Utterance, str], None]
) -> Iterator[list[tuple[_Pending, int, np.ndarray]]]:
    """Load audio until a chunk holds enough windows; yield (utterance, window index, wave) triples."""
    limit = config.batch_size * _BATCHES_PER_CHUNK
    chunk: list[tuple[_Pending, int, np.ndarray]] = []
    for utt in utterances:
        if not utt.audio:
            fail(utt, "no audio file in the manifest row")
            continue
        try:
            wave = load_audio(utt.audio, DEFAULT_SAMPLE_RATE)
        except Exception as err:  # AudioError names the file; anything else is reported the same way
            fail(utt, str(err) if str(err) else type(err).__name__)
            continue
        windows = split_windows(wave, DEFAULT_SAMPLE_RATE, long_form=config.long_form)
        pending = _Pending(utt, [None] * len(windows), len(windows))
        chunk += [(pending, index, window) for index, window in enumerate(windows)]
        if len(chunk) >= limit:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def transcribe_utterances(
    utterances: Sequence[Utterance],
    config: TranscriptionConfig | None = None,
    *,
    progress: bool = True,
    report: Callable[[str], None] = print,
    on_result: ResultCallback | None = None,
    transcriber=None,
) -> dict[str, str | None]:
    """Transcribe the audio of ``utterances``; returns ``{id: text}`` in input order.

    Utterances are taken longest first (by their manifest ``duration``), their
    windows sorted by length within chunks of a few batches and decoded
    ``config.batch_size`` at a time. An utterance whose audio fails to load or
    whose decoding raises gets ``None`` and is reported (``report``) as
    ``"ID: reason"``. ``on_result(id, text, error)`` is called as soon as an
    utterance is finished. ``transcriber`` replaces the backend built from
    ``config`` (a loaded one can be reused across calls).
    """
    from tqdm.auto import tqdm

    config = config or TranscriptionConfig()
    ids = [utt.id for utt in utterances]
    if len(set(ids)) != len(ids):
        duplicates = sorted(utt_id for utt_id, count in Counter(ids).items() if count > 1)
        raise ValueError(f"duplicate utterance id(s): {', '.join(duplicates[:5])}")
    results: dict[str, str | None] = {utt_id: None for utt_id in ids}
    if not utterances:
        return results
    engine = transcriber if transcriber is not None else load_transcriber(config)
    bar = tqdm(total=len(utterances), desc="transcribing", unit="utt", disable=None if progress else True)

    def finish(utt: Utterance, text: str | None, error: str | None) -> None:
        if error is not None:
            report(f"{utt.id}: {error}")
        results[utt.id] = text
        bar.update()
        if on_result is not None:
            on_result(utt.id, text, error)

    def fail(utt: Utterance, reason: str) -> None:
        finish(utt, None, reason)

    ordered = sorted(utterances, key=lambda u: -(u.duration or 0.0))  # stable: equal durations keep input order
    try:
        for chunk in _chunks(ordered, config, fail):
            chunk.sort(key=lambda item: -len(item[2]))
            for start in range(0, len(chunk), config.batch_size):
                batch = chunk[start : start + config.batch_size]
                texts, errors = _decode_batch(engine, [wave for _, _, wave in batch])
                for (pending, index, _), text, error in zip(batch, texts, errors):
                    pending.texts[index] = text
                    if error is not None and pending.error is None:
                        pending.error = f"decoding failed in the window at {index * WINDOW_SECONDS:.0f} s ({error})"
                    pending.left -= 1
                    if pending.left == 0:
                        if pending.error is not None:
                            finish(pending.utt, None, pending.error)
                        else:
                            finish(pending.utt, " ".join(t for t in pending.texts if t), None)
    finally:
        bar.close()
    return {utt_id: results[utt_id] for utt_id in ids}


def _decode_batch(engine, waves: list[np.ndarray]) -> tuple[list[str | None], list[str | None]]:
    """Texts and errors of one batch; when the batch fails, each window is retried alone
    so that only the windows that fail by themselves lose their text."""
    try:
        texts = engine.transcribe(waves)
        if len(texts) != len(waves):
            raise RuntimeError(f"the backend returned {len(texts)} texts for {len(waves)} windows")
        return list(texts), [None] * len(waves)
    except Exception as err:  # noqa: BLE001 - one bad batch must not end the job
        if len(waves) == 1:
            return [None], [_short(err)]
    texts: list[str | None] = []
    errors: list[str | None] = []
    for wave in waves:
        text, error = _decode_batch(engine, [wave])
        texts += text
        errors += error
    return texts, errors


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text[:300]}" if text else type(err).__name__


# ----------------------------------------------------------------------------- manifests


@dataclass
class TranscriptionSummary:
    """What ``transcribe_manifest`` did: counts, failures ``{id: reason}``, wall-clock seconds."""

    transcribed: int
    kept: int
    failed: int
    seconds: float
    output: str
    failures: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        """One line for people: ``N transcribed, M kept, K failed in S s -> OUT``."""
        return (
            f"{self.transcribed} transcribed, {self.kept} kept, {self.failed} failed "
            f"in {self.seconds:.1f} s -> {self.output}"
        )


def transcribe_manifest(
    src: str | Path,
    dst: str | Path,
    config: TranscriptionConfig | None = None,
    *,
    overwrite: bool = False,
    save_every: int = 10,
    progress: bool = True,
    report: Callable[[str], None] = print,
    transcriber=None,
) -> TranscriptionSummary:
    """Fill the ``text`` field of manifest ``src`` and write ``dst`` (may be ``src``).

    Rows whose ``text`` is already non-empty are kept unless ``overwrite``, so
    a rerun after an interruption only transcribes what is left. ``dst`` is
    rewritten atomically every ``save_every`` batches, when the run ends, and
    when it is interrupted. Failed rows keep ``text`` null (a rerun retries
    them) and are listed in the summary.
    """
    if save_every < 1:
        raise ValueError(f"save_every must be at least 1 batch, got {save_every}")
    config = config or TranscriptionConfig()
    started = time.perf_counter()
    utterances = read_manifest(src)
    if not utterances:
        raise TranscriptionError(f"{src}: the manifest holds no utterances")
    todo = [utt for utt in utterances if overwrite or not (utt.text and utt.text.strip())]
    kept = len(utterances) - len(todo)
    by_id = {utt.id: utt for utt in utterances}
    failures: dict[str, str] = {}
    transcribed = 0
    unsaved = 0
    save_after = save_every * config.batch_size

    def on_result(utt_id: str, text: str | None, error: str | None) -> None:
        nonlocal transcribed, unsaved
        if error is not None:
            failures[utt_id] = error  # the row keeps the text it had (null unless overwrite)
        else:
            by_id[utt_id].text = text
            transcribed += 1
        unsaved += 1
        if unsaved >= save_after:
            write_manifest(dst, utterances)
            unsaved = 0

    completed = False
    try:
        transcribe_utterances(
            todo, config, progress=progress, report=report, on_result=on_result, transcriber=transcriber
        )
        completed = True
    finally:
        # A finished run always writes dst; an interrupted one saves what it has not saved yet.
        if completed or unsaved:
            write_manifest(dst, utterances)
    return TranscriptionSummary(
        transcribed=transcribed,
        kept=kept,
        failed=len(failures),
        seconds=time.perf_counter() - started,
        output=str(dst),
        failures=failures,
    )
