"""Whisper transcription of manifests: windows, batching, failures, resumable
atomic writes, WER, the CLI, and both backends on one tiny random Whisper
(written in the CTranslate2 layout and converted to transformers, so the two
backends decode identical weights).

A random model emits nonsense, so the tests check the machinery, not words;
the opt-in integration test checks words on a real RAVDESS file.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from abhinaya.asr.transcribe import (
    TranscriptionConfig,
    TranscriptionError,
    ctranslate2_model_folder,
    normalize_text,
    split_windows,
    transcribe_manifest,
    transcribe_utterances,
    word_error_rate,
)
from abhinaya.cli import main
from abhinaya.manifest import Utterance, read_manifest, write_manifest

RATE = 16_000
REPO = Path(__file__).resolve().parents[2]
RAVDESS = REPO.parent / "shared" / "data" / "ravdess"
RAVDESS_STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}


# ----------------------------------------------------------------------------- helpers


def write_wav(path: Path, seconds: float, seed: int = 0) -> Path:
    """Quiet noise with a tone, ``seconds`` long, 16 kHz mono."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    wave = 0.2 * np.sin(2 * np.pi * (200 + 40 * seed) * t) + 0.02 * rng.standard_normal(t.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.astype(np.float32), RATE)
    return path


def make_manifest(folder: Path, seconds: list[float], texts: dict[str, str] | None = None) -> Path:
    """A manifest of utterances u0, u1, ... with wav files of the given lengths."""
    texts = texts or {}
    utts = []
    for i, length in enumerate(seconds):
        audio = write_wav(folder / "audio" / f"u{i}.wav", length, seed=i)
        utts.append(Utterance(f"u{i}", audio=str(audio), split="test", text=texts.get(f"u{i}"), duration=length))
    return write_manifest(folder / "manifest.jsonl", utts)


class SpyTranscriber:
    """Stands in for a backend: the text of a window is its length in samples."""

    def __init__(self, fail_lengths=(), interrupt_after: int | None = None):
        self.batches: list[list[int]] = []
        self.fail_lengths = set(fail_lengths)
        self.interrupt_after = interrupt_after

    @property
    def windows(self) -> int:
        return sum(len(batch) for batch in self.batches)

    def transcribe(self, waves):
        lengths = [len(w) for w in waves]
        if self.interrupt_after is not None and self.windows >= self.interrupt_after:
            raise KeyboardInterrupt
        self.batches.append(lengths)
        if self.fail_lengths & set(lengths):
            raise RuntimeError("decoder exploded")
        return [f"n{length}" for length in lengths]


# ----------------------------------------------------------------------------- text and WER


def test_normalize_text():
    assert normalize_text("Kids are talking by the door.") == "kids are talking by the door"
    assert normalize_text("  Was sind denn das für Tüten, die da unter dem Tisch stehen? ") == (
        "was sind denn das für tüten die da unter dem tisch stehen"
    )
    assert normalize_text("Don't -- stop!") == "dont stop"


def test_word_error_rate_matches_hand_counts():
    assert word_error_rate("Kids are talking by the door", "kids are talking by the door.") == 0.0
    assert word_error_rate("a b c d", "a x c") == pytest.approx(2 / 4)  # one substitution, one deletion
    assert word_error_rate("a b", "a b c d") == pytest.approx(2 / 2)  # two insertions
    assert word_error_rate(["a b c d", "e f"], ["a b c d", ""]) == pytest.approx(2 / 6)
    assert word_error_rate(["e f g"], [None]) == pytest.approx(1.0)  # a failed transcript counts as empty
    # "ich es" -> "ich's": one substitution (ichs for ich), one deletion (es).
    assert word_error_rate("Heute abend könnte ich es ihm sagen.", "heute Abend könnte ich's ihm sagen") == (
        pytest.approx(2 / 7)
    )
    assert word_error_rate("Dogs are", "dogs are", normalize=False) == pytest.approx(1 / 2)
    with pytest.raises(ValueError, match="2 reference"):
        word_error_rate(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no words"):
        word_error_rate([" ", "?"], ["a", "b"])


# ----------------------------------------------------------------------------- windows and config


def test_split_windows():
    wave = np.zeros(65 * RATE, dtype=np.float32)
    windows = split_windows(wave, RATE)
    assert [len(w) for w in windows] == [30 * RATE, 30 * RATE, 5 * RATE]
    assert np.shares_memory(windows[1], wave)  # views, not copies
    assert [len(w) for w in split_windows(wave, RATE, long_form="first30")] == [30 * RATE]
    assert [len(w) for w in split_windows(np.zeros(60 * RATE), RATE)] == [30 * RATE, 30 * RATE]
    assert len(split_windows(np.zeros(60 * RATE + RATE // 10), RATE)) == 2  # a 0.1 s tail holds no word
    assert [len(w) for w in split_windows(np.zeros(RATE // 10), RATE)] == [RATE // 10]  # a short utterance stays
    with pytest.raises(ValueError, match="long_form"):
        split_windows(wave, RATE, long_form="all")


def test_config_is_validated():
    assert TranscriptionConfig(language="auto").language is None
    assert TranscriptionConfig(language=" DE ").language == "de"
    for bad in ({"backend": "whisper.cpp"}, {"long_form": "all"}, {"batch_size": 0}, {"task": "summarize"}):
        with pytest.raises(ValueError):
            TranscriptionConfig(**bad)


# ----------------------------------------------------------------------------- batching and failures


def test_one_result_per_utterance_in_input_order_with_batches_of_similar_length(tmp_path):
    manifest = make_manifest(tmp_path, [2.0, 65.0, 1.0, 3.0, 31.0])
    utts = read_manifest(manifest)
    spy = SpyTranscriber()
    seen = []
    results = transcribe_utterances(
        utts, TranscriptionConfig(batch_size=2), progress=False, transcriber=spy,
        on_result=lambda utt_id, text, error: seen.append(utt_id),
    )
    assert list(results) == ["u0", "u1", "u2", "u3", "u4"]
    assert results["u0"] == f"n{2 * RATE}"
    assert results["u1"] == f"n{30 * RATE} n{30 * RATE} n{5 * RATE}"  # windows joined in time order
    assert results["u4"] == f"n{30 * RATE} n{1 * RATE}"
    assert sorted(seen) == sorted(results)
    assert all(len(batch) <= 2 for batch in spy.batches)
    flat = [length for batch in spy.batches for length in batch]
    assert flat == sorted(flat, reverse=True)  # windows decoded longest first
    assert len(flat) == 8


def test_first30_reads_only_the_first_window(tmp_path):
    utts = read_manifest(make_manifest(tmp_path, [65.0, 3.0]))
    spy = SpyTranscriber()
    results = transcribe_utterances(utts, TranscriptionConfig(long_form="first30"), progress=False, transcriber=spy)
    assert results == {"u0": f"n{30 * RATE}", "u1": f"n{3 * RATE}"}
    assert spy.windows == 2


def test_bad_audio_is_reported_by_id_and_the_rest_is_transcribed(tmp_path):
    manifest = make_manifest(tmp_path, [1.0, 1.5, 2.0])
    utts = read_manifest(manifest)
    Path(utts[0].audio).unlink()
    Path(utts[2].audio).write_bytes(b"RIFF....not really audio")
    utts.append(Utterance("no-audio", audio=None))
    messages = []
    results = transcribe_utterances(utts, progress=False, transcriber=SpyTranscriber(), report=messages.append)
    assert results == {"u0": None, "u1": f"n{int(1.5 * RATE)}", "u2": None, "no-audio": None}
    assert any(m.startswith("u0: ") and "file not found" in m for m in messages)
    assert any(m.startswith("u2: ") and "u2.wav" in m for m in messages)
    assert any(m.startswith("no-audio: ") for m in messages)


def test_a_failing_window_only_fails_its_own_utterance(tmp_path):
    manifest = make_manifest(tmp_path, [1.0, 2.0, 3.0, 4.0])
    spy = SpyTranscriber(fail_lengths={3 * RATE})
    messages = []
    results = transcribe_utterances(
        read_manifest(manifest), TranscriptionConfig(batch_size=4), progress=False, transcriber=spy,
        report=messages.append,
    )
    assert results["u2"] is None
    assert [results[u] for u in ("u0", "u1", "u3")] == [f"n{RATE}", f"n{2 * RATE}", f"n{4 * RATE}"]
    assert len(messages) == 1 and messages[0].startswith("u2: decoding failed") and "decoder exploded" in messages[0]


def test_duplicate_ids_are_refused():
    with pytest.raises(ValueError, match="duplicate"):
        transcribe_utterances([Utterance("a"), Utterance("a")], progress=False, transcriber=SpyTranscriber())


# ----------------------------------------------------------------------------- manifests


def test_rows_with_text_are_kept_and_not_transcribed_again(tmp_path):
    manifest = make_manifest(tmp_path, [1.0, 2.0, 3.0], texts={"u1": "already here"})
    spy = SpyTranscriber()
    out = tmp_path / "out" / "transcribed.jsonl"
    summary = transcribe_manifest(manifest, out, progress=False, transcriber=spy)
    assert (summary.transcribed, summary.kept, summary.failed) == (2, 1, 0)
    assert spy.windows == 2
    rows = {u.id: u for u in read_manifest(out)}
    assert rows["u1"].text == "already here"
    assert rows["u0"].text == f"n{RATE}" and rows["u2"].text == f"n{3 * RATE}"
    assert Path(rows["u0"].audio).is_file()  # audio paths still resolve from the new folder

    again = SpyTranscriber()
    summary = transcribe_manifest(out, out, progress=False, transcriber=again)
    assert (summary.transcribed, summary.kept) == (0, 3) and again.windows == 0

    summary = transcribe_manifest(out, out, overwrite=True, progress=False, transcriber=again)
    assert (summary.transcribed, summary.kept) == (3, 0) and again.windows == 3
    assert {u.id: u.text for u in read_manifest(out)}["u1"] == f"n{2 * RATE}"


def test_in_place_run_is_atomic_and_resumes_after_an_interruption(tmp_path):
    manifest = make_manifest(tmp_path, [5.0, 4.0, 3.0, 2.0, 1.0])
    before = manifest.read_text()
    config = TranscriptionConfig(batch_size=1)
    with pytest.raises(KeyboardInterrupt):
        transcribe_manifest(
            manifest, manifest, config, save_every=1, progress=False, transcriber=SpyTranscriber(interrupt_after=2)
        )
    assert manifest.read_text() != before
    texts = {u.id: u.text for u in read_manifest(manifest)}
    assert texts == {"u0": f"n{5 * RATE}", "u1": f"n{4 * RATE}", "u2": None, "u3": None, "u4": None}
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["manifest.jsonl"]  # no temporary file left

    spy = SpyTranscriber()
    summary = transcribe_manifest(manifest, manifest, config, progress=False, transcriber=spy)
    assert (summary.transcribed, summary.kept, summary.failed) == (3, 2, 0) and spy.windows == 3
    assert all(u.text for u in read_manifest(manifest))
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["manifest.jsonl"]


def test_failed_rows_keep_no_text_and_are_retried(tmp_path):
    manifest = make_manifest(tmp_path, [1.0, 2.0])
    Path(read_manifest(manifest)[1].audio).unlink()
    summary = transcribe_manifest(manifest, manifest, progress=False, report=lambda m: None,
                                  transcriber=SpyTranscriber())
    assert (summary.transcribed, summary.failed) == (1, 1) and "file not found" in summary.failures["u1"]
    assert {u.id: u.text for u in read_manifest(manifest)} == {"u0": f"n{RATE}", "u1": None}
    write_wav(tmp_path / "audio" / "u1.wav", 2.0)
    spy = SpyTranscriber()
    summary = transcribe_manifest(manifest, manifest, progress=False, transcriber=spy)
    assert (summary.transcribed, summary.kept, summary.failed) == (1, 1, 0) and spy.windows == 1


# ----------------------------------------------------------------------------- a tiny Whisper for both backends

BYTE_ALPHABET_SIZE = 256
WHISPER_TEXT_TOKENS = 50257  # ids below <|endoftext|>
WHISPER_VOCAB = 51865  # CTranslate2 treats a Whisper as multilingual from this size on
TIMESTAMPS = 1501


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, tiny_whisper_dir):
    """(transformers folder, CTranslate2 folder) of one tiny random multilingual Whisper.

    The encoder and decoder sizes are those of the shared ``tiny_whisper_dir``;
    the vocabulary has Whisper's layout (byte-level alphabet, filler tokens up to
    id 50255, an empty token, <|endoftext|>, <|startoftranscript|>, 99 languages, the task and
    <|notimestamps|> tokens, 1501 timestamps) so that CTranslate2 treats it as
    multilingual and detects languages. The CTranslate2 folder is written with
    the package's model.bin writer; the transformers folder is its conversion.
    """
    pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    from abhinaya.weights.ctranslate2_format import write_ctranslate2_model
    from abhinaya.weights.whisper_conversion import convert_ctranslate2_whisper

    root = tmp_path_factory.mktemp("tiny-whisper-asr")
    ct2 = root / "ct2"
    ct2.mkdir()

    alphabet = sorted(tokenizers.pre_tokenizers.ByteLevel.alphabet())
    assert len(alphabet) == BYTE_ALPHABET_SIZE
    # Fillers, then an empty token at 50256 as in Whisper's own vocabulary; CTranslate2 counts
    # the vocabulary as Whisper's full size only with that empty entry.
    text_tokens = alphabet + [f"<w{i}>" for i in range(WHISPER_TEXT_TOKENS - BYTE_ALPHABET_SIZE - 1)] + [""]
    specials = ["<|endoftext|>", "<|startoftranscript|>"] + [f"<|{code}|>" for code in list(LANGUAGES)[:99]]
    specials += ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>",
                 "<|notimestamps|>"]
    backend = tokenizers.Tokenizer(tokenizers.models.BPE(vocab={t: i for i, t in enumerate(text_tokens)}, merges=[]))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = tokenizers.decoders.ByteLevel()
    backend.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False) for t in specials])
    backend.save(str(ct2 / "tokenizer.json"))
    vocabulary = text_tokens + specials + [f"<|{i * 0.02:.2f}|>" for i in range(TIMESTAMPS)]
    assert len(vocabulary) == WHISPER_VOCAB
    (ct2 / "vocabulary.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    ids = {token: i for i, token in enumerate(vocabulary)}
    (ct2 / "config.json").write_text(json.dumps({
        "alignment_heads": [[0, 0]],
        "lang_ids": [ids[t] for t in specials[2:101]],
        "suppress_ids": [],
        "suppress_ids_begin": [ids["Ġ"], ids["<|endoftext|>"]],
    }))

    config = WhisperConfig.from_pretrained(tiny_whisper_dir)
    config.vocab_size = WHISPER_VOCAB
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # larger weights than the default init: decisive logits, varied tokens
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.3)
    write_ctranslate2_model(ct2 / "model.bin", "WhisperSpec", 3, _ctranslate2_variables(model),
                            {"decoder/projection/weight": "decoder/embeddings/weight"})
    hf = convert_ctranslate2_whisper(ct2, root / "hf", progress=False)
    return hf, ct2


def _ctranslate2_variables(model) -> dict[str, np.ndarray]:
    """``model``'s weights under CTranslate2's Whisper variable names (fused q|k|v, k|v)."""
    sd = {name: value.detach().numpy() for name, value in model.state_dict().items()}
    config = model.config
    out: dict[str, np.ndarray] = {
        "encoder/num_heads": np.int16(config.encoder_attention_heads),
        "decoder/num_heads": np.int16(config.decoder_attention_heads),
        "decoder/pre_norm": np.int8(1),
        "decoder/activation": np.int8(3),  # GELU
        "decoder/alignment_layer": np.int16(-1),
        "decoder/alignment_heads": np.int16(1),
        # Unset, CTranslate2 would scale the token embeddings by sqrt(d_model).
        "decoder/scale_embeddings": np.int8(0),
        "decoder/alibi": np.int8(0),
        "decoder/start_from_zero_embedding": np.int8(0),
    }

    def copy(target: str, source: str, suffixes=(("weight", "weight"), ("bias", "bias"))) -> None:
        for ours, theirs in suffixes:
            out[f"{target}/{ours}"] = sd[f"{source}.{theirs}"]

    def norm(target: str, source: str) -> None:
        copy(target, source, (("gamma", "weight"), ("beta", "bias")))

    def fuse(target: str, source: str, projections: tuple[str, ...]) -> None:
        weights = [sd[f"{source}.{p}.weight"] for p in projections]
        biases = [sd.get(f"{source}.{p}.bias", np.zeros(len(w), np.float32)) for p, w in zip(projections, weights)]
        out[f"{target}/weight"] = np.concatenate(weights)
        out[f"{target}/bias"] = np.concatenate(biases)

    for side in ("encoder", "decoder"):
        hf = f"model.{side}"
        out[f"{side}/position_encodings/encodings"] = sd[f"{hf}.embed_positions.weight"]
        norm(f"{side}/layer_norm", f"{hf}.layer_norm")
        layers = config.encoder_layers if side == "encoder" else config.decoder_layers
        for i in range(layers):
            src, dst = f"{hf}.layers.{i}", f"{side}/layer_{i}"
            fuse(f"{dst}/self_attention/linear_0", f"{src}.self_attn", ("q_proj", "k_proj", "v_proj"))
            copy(f"{dst}/self_attention/linear_1", f"{src}.self_attn.out_proj")
            norm(f"{dst}/self_attention/layer_norm", f"{src}.self_attn_layer_norm")
            if side == "decoder":
                copy(f"{dst}/attention/linear_0", f"{src}.encoder_attn.q_proj")
                fuse(f"{dst}/attention/linear_1", f"{src}.encoder_attn", ("k_proj", "v_proj"))
                copy(f"{dst}/attention/linear_2", f"{src}.encoder_attn.out_proj")
                norm(f"{dst}/attention/layer_norm", f"{src}.encoder_attn_layer_norm")
            copy(f"{dst}/ffn/linear_0", f"{src}.fc1")
            copy(f"{dst}/ffn/linear_1", f"{src}.fc2")
            norm(f"{dst}/ffn/layer_norm", f"{src}.final_layer_norm")
    copy("encoder/conv1", "model.encoder.conv1")
    copy("encoder/conv2", "model.encoder.conv2")
    out["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    return out


def tiny_config(model: Path, backend: str, **options) -> TranscriptionConfig:
    # The tiny decoder has 32 positions: 4 prompt tokens + at most 28 new ones.
    return TranscriptionConfig(model=str(model), backend=backend, device="cpu", compute_type="float32",
                               max_new_tokens=12, **options)


@pytest.fixture(scope="module")
def short_manifest(tmp_path_factory):
    return make_manifest(tmp_path_factory.mktemp("asr-corpus"), [1.0, 2.5, 0.7, 33.0])


@pytest.mark.parametrize("language", [None, "en"])
def test_both_backends_decode_the_tiny_whisper_alike(tiny_models, short_manifest, language):
    pytest.importorskip("ctranslate2")
    hf, ct2 = tiny_models
    utts = read_manifest(short_manifest)
    texts = {}
    for backend, folder in (("transformers", hf), ("ctranslate2", ct2)):
        texts[backend] = transcribe_utterances(
            utts, tiny_config(folder, backend, language=language, batch_size=3), progress=False
        )
        assert list(texts[backend]) == ["u0", "u1", "u2", "u3"]
        assert all(isinstance(text, str) and text for text in texts[backend].values())
        assert "<|" not in "".join(texts[backend].values())  # special and timestamp tokens are dropped
    assert texts["transformers"] == texts["ctranslate2"]
    assert len(texts["transformers"]["u3"].split(" ")) >= 2  # 33 s: two windows, joined


def test_transformers_backend_reports_bad_audio_and_transcribes_the_rest(tiny_models, tmp_path):
    hf, _ = tiny_models
    manifest = make_manifest(tmp_path, [1.0, 1.2])
    broken = tmp_path / "audio" / "broken.wav"
    broken.write_bytes(b"\x00" * 64)
    rows = read_manifest(manifest) + [Utterance("broken", audio=str(broken)), Utterance("gone", audio="/nope.wav")]
    write_manifest(manifest, rows)
    messages = []
    summary = transcribe_manifest(manifest, manifest, tiny_config(hf, "transformers", language="de"),
                                  progress=False, report=messages.append)
    assert (summary.transcribed, summary.failed) == (2, 2)
    assert sorted(summary.failures) == ["broken", "gone"]
    assert sorted(m.split(":")[0] for m in messages) == ["broken", "gone"]
    texts = {u.id: u.text for u in read_manifest(manifest)}
    assert texts["u0"] and texts["u1"] and texts["broken"] is None and texts["gone"] is None


def test_ctranslate2_model_names_map_to_their_ct2_folder(tmp_path, monkeypatch, tiny_models):
    monkeypatch.setenv("ABHINAYA_MODEL_CACHE", str(tmp_path))
    folder = tmp_path / "whisper-base-ct2"
    folder.mkdir()
    (folder / ".complete").write_text("{}")
    (folder / "model.bin").write_bytes(b"")
    (folder / "tokenizer.json").write_text("{}")
    assert ctranslate2_model_folder("whisper-base") == folder
    assert ctranslate2_model_folder("whisper-base-ct2") == folder
    with pytest.raises(TranscriptionError, match="no model.bin"):
        ctranslate2_model_folder(tiny_models[0])  # a transformers folder
    with pytest.raises(FileNotFoundError, match="neither a local folder nor a known offline model"):
        ctranslate2_model_folder(str(tmp_path / "nothing"))


def test_unknown_language_is_a_clear_error(tiny_models):
    pytest.importorskip("ctranslate2")
    hf, ct2 = tiny_models
    with pytest.raises(ValueError, match="unknown language 'klingon'"):
        transcribe_utterances([Utterance("a", audio="x.wav")], tiny_config(hf, "transformers", language="klingon"))
    with pytest.raises(ValueError, match="no language token <\\|yue\\|>"):
        transcribe_utterances([Utterance("a", audio="x.wav")], tiny_config(ct2, "ctranslate2", language="yue"))


# ----------------------------------------------------------------------------- CLI


def test_cli_transcribe_round_trip(tiny_models, tmp_path, capsys):
    pytest.importorskip("ctranslate2")
    hf, ct2 = tiny_models
    manifest = make_manifest(tmp_path, [1.0, 2.0, 1.5], texts={"u2": "kept as is"})
    out = tmp_path / "with-text.jsonl"
    tiny = ["--max-new-tokens", "12", "--no-progress"]  # the tiny decoder has 32 positions
    code = main(["transcribe", str(manifest), "-o", str(out), "--model", str(hf), "--batch-size", "2",
                 "--device", "cpu", *tiny])
    assert code == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("2 transcribed, 1 kept, 0 failed in ") and line.endswith(str(out))
    texts = {u.id: u.text for u in read_manifest(out)}
    assert texts["u0"] and texts["u1"] and texts["u2"] == "kept as is"

    code = main(["transcribe", str(out), "-o", str(out), "--model", str(ct2), "--backend", "ctranslate2",
                 "--language", "en", "--first-30s", "--overwrite", "--compute-type", "float32", *tiny])
    assert code == 0
    assert capsys.readouterr().out.startswith("3 transcribed, 0 kept, 0 failed")
    assert all(u.text for u in read_manifest(out))


def test_cli_transcribe_errors(tiny_models, tmp_path, capsys):
    hf, _ = tiny_models
    assert main(["transcribe", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "o.jsonl")]) == 1
    assert "manifest not found" in capsys.readouterr().err

    manifest = write_manifest(tmp_path / "m.jsonl", [Utterance("a", audio="gone-a.wav"), Utterance("b", audio="gone-b.wav")])
    code = main(["transcribe", str(manifest), "-o", str(manifest), "--model", str(hf), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "failed: a: " in err and "failed: b: " in err and "every utterance to transcribe failed" in err

    assert main(["transcribe", str(manifest), "-o", str(manifest), "--model", str(tmp_path / "no-model")]) == 1
    assert "no-model" in capsys.readouterr().err
    assert main(["transcribe", str(manifest), "-o", str(manifest), "--batch-size", "0"]) == 1
    assert "batch_size" in capsys.readouterr().err


# ----------------------------------------------------------------------------- real Whisper-base (opt-in)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("backend", ["transformers", "ctranslate2"])
def test_real_whisper_base_transcribes_a_ravdess_file(backend):
    """One RAVDESS file (statement = field 5 of the name) with the prepared
    Whisper-base; skips when the model or the data is absent."""
    from abhinaya.weights.cache import ModelNotAvailableError

    files = sorted(RAVDESS.glob("Actor_01/*.flac"))
    if not files:
        pytest.skip(f"no RAVDESS files under {RAVDESS / 'Actor_01'}")
    if backend == "ctranslate2":
        pytest.importorskip("ctranslate2")
    try:
        folder = ctranslate2_model_folder("whisper-base") if backend == "ctranslate2" else None
        if folder is None:
            from abhinaya.weights.cache import resolve_model_path

            folder = resolve_model_path("whisper-base")
    except (ModelNotAvailableError, TranscriptionError) as err:
        pytest.skip(f"Whisper-base is not prepared: {err}")
    picks = [files[0], files[-1]]  # statement 01 and statement 02
    utts = [Utterance(path.stem, audio=str(path)) for path in picks]
    references = [RAVDESS_STATEMENTS[path.stem.split("-")[4]] for path in picks]
    results = transcribe_utterances(utts, TranscriptionConfig(model=str(folder), backend=backend), progress=False)
    hypotheses = [results[utt.id] for utt in utts]
    assert word_error_rate(references, hypotheses) < 0.3, hypotheses


def test_an_empty_manifest_is_named_in_the_error(tmp_path):
    from abhinaya.asr.transcribe import TranscriptionError, transcribe_manifest

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(TranscriptionError, match="empty.jsonl: the manifest holds no utterances"):
        transcribe_manifest(empty, tmp_path / "out.jsonl")
