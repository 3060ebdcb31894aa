"""Tiny random-weight models in the layouts of the real pretrained folders, for tests and the demo.

Each ``write_tiny_*`` function writes a folder as ``save_pretrained`` writes it (seeded, so the weights are the same
every time) and returns it: Whisper and WavLM for the speech encoders, a Llama (SmolLM2's architecture) with a
word-level tokenizer and a chat template for the LLM members, and a Whisper with its processor for transcription.
What they compute is noise; they let every code path run offline in seconds. A folder is written under a temporary
name first and moved into place, so a half-written folder is never mistaken for a model.
"""

from __future__ import annotations

import shutil
import string
from pathlib import Path
from typing import Any, Iterable, Sequence

# Whisper encoder-decoder (the speech encoder of S1, S2 and ST1 in tests).
TINY_WHISPER: dict[str, Any] = {
    "d_model": 32,
    "encoder_layers": 2,
    "encoder_attention_heads": 2,
    "encoder_ffn_dim": 64,
    "decoder_layers": 1,
    "decoder_attention_heads": 2,
    "decoder_ffn_dim": 64,
    "num_mel_bins": 80,
    "max_source_positions": 1500,
    "max_target_positions": 32,
    "vocab_size": 64,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "decoder_start_token_id": 1,
}

# WavLM with a layer-normalised CNN, as WavLM-Large.
TINY_WAVLM: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [16, 16],
    "conv_stride": [5, 4],
    "conv_kernel": [10, 8],
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
    "feat_extract_norm": "layer",
    "do_stable_layer_norm": True,
    "mask_time_prob": 0.0,
    "layerdrop": 0.0,
}

# Words the tests' tiny Llama knows (one token each); anything else is <unk>.
TINY_LLAMA_WORDS: tuple[str, ...] = tuple(
    "angry sad happy surprise fear disgust contempt neutral calm boredom joy anger sadness surprised fearful "
    "emotion sentence text transcript : the a i you is am are not this that what why so very really oh no yes "
    "great terrible love hate wow okay fine , . ! ? user assistant system classify reply one word".split()
)
TINY_LLAMA_SPECIALS: tuple[str, ...] = ("<pad>", "<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>")
TINY_LLAMA_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' ' + message['content'] + ' <|im_end|> ' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant ' }}{% endif %}"
)
TINY_LLAMA: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "tie_word_embeddings": True,
}

# The demo's stand-in for SmolLM2: a little wider, two layers, a vocabulary made from the corpus and the prompts.
DEMO_LLAMA: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "tie_word_embeddings": True,
}
DEMO_LLAMA_SPECIALS: tuple[str, ...] = ("<pad>", "<unk>", "<|im_start|>", "<|im_end|>")


def _staging(folder: Path) -> Path:
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    return staging


def _publish(staging: Path, folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    staging.replace(folder)
    return folder


def write_tiny_whisper(folder: str | Path, config: dict[str, Any] | None = None) -> Path:
    """A tiny random Whisper (``WhisperModel``, no processor) standing in for a pretrained speech encoder."""
    import torch
    from transformers import WhisperConfig, WhisperModel

    folder = Path(folder)
    staging = _staging(folder)
    torch.manual_seed(0)
    WhisperModel(WhisperConfig(**(config or TINY_WHISPER))).save_pretrained(staging)
    return _publish(staging, folder)


def write_tiny_wavlm(folder: str | Path, config: dict[str, Any] | None = None) -> Path:
    """A tiny random WavLM standing in for WavLM-Large."""
    import torch
    from transformers import WavLMConfig, WavLMModel

    folder = Path(folder)
    staging = _staging(folder)
    torch.manual_seed(0)
    WavLMModel(WavLMConfig(**(config or TINY_WAVLM))).save_pretrained(staging)
    return _publish(staging, folder)


def write_tiny_llama(
    folder: str | Path,
    words: Iterable[str] = TINY_LLAMA_WORDS,
    *,
    specials: Sequence[str] = TINY_LLAMA_SPECIALS,
    lowercase: bool = False,
    config: dict[str, Any] | None = None,
) -> Path:
    """A tiny random Llama causal LM with a chat template and a word-level tokenizer: ``specials``, then ``words``
    (one token each; words and punctuation are split apart, anything unknown becomes ``<unk>``; ``lowercase``:
    text is lower-cased first). Standing in for SmolLM2 / Llama."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    specials = list(specials)
    vocab = {token: i for i, token in enumerate(specials + [w for w in words if w not in specials])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    if lowercase:
        backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", bos_token="<|im_start|>", eos_token="<|im_end|>"
    )
    tokenizer.chat_template = TINY_LLAMA_CHAT_TEMPLATE
    staging = _staging(folder)
    tokenizer.save_pretrained(staging)
    torch.manual_seed(0)
    llama = LlamaConfig(
        vocab_size=len(vocab), pad_token_id=vocab["<pad>"], bos_token_id=vocab["<|im_start|>"],
        eos_token_id=vocab["<|im_end|>"], **(config or TINY_LLAMA),
    )
    LlamaForCausalLM(llama).save_pretrained(staging)
    return _publish(staging, folder)


def write_tiny_llama_for_texts(folder: str | Path, texts: Iterable[str]) -> Path:
    """The demo's tiny Llama: its vocabulary is every word of ``texts`` (lower-cased), the chat roles, single letters
    and digits."""
    from tokenizers import pre_tokenizers

    split_words = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    words = {word for text in texts for word, _ in split_words.pre_tokenize_str(text.lower())}
    words = sorted(words | {"system", "user", "assistant"} | set(string.ascii_lowercase + string.digits))
    return write_tiny_llama(folder, words, specials=DEMO_LLAMA_SPECIALS, lowercase=True, config=DEMO_LLAMA)


def write_tiny_whisper_asr(folder: str | Path) -> Path:
    """A tiny random Whisper for transcription, with its processor: Whisper's architecture, an English-only
    byte-level vocabulary (259 tokens). Enough for S1 and for transcription to run; what it says is noise."""
    import tokenizers
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    from abhinaya.weights.whisper_conversion import build_whisper_tokenizer

    folder = Path(folder)
    staging = _staging(folder)
    staging.mkdir(parents=True)
    alphabet = sorted(tokenizers.pre_tokenizers.ByteLevel.alphabet())
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>"]
    backend = tokenizers.Tokenizer(tokenizers.models.BPE(vocab={t: i for i, t in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = tokenizers.decoders.ByteLevel()
    backend.add_special_tokens([tokenizers.AddedToken(t, special=True, normalized=False) for t in specials])
    backend.save(str(staging / "tokenizer.json"))
    positions = 32
    tokenizer, ids = build_whisper_tokenizer(staging / "tokenizer.json", len(alphabet) + len(specials), [], positions)
    eot, start = ids.end_of_text, ids.start_of_transcript
    config = WhisperConfig(
        d_model=64, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=128, decoder_layers=1,
        decoder_attention_heads=2, decoder_ffn_dim=128, vocab_size=len(alphabet) + len(specials),
        max_target_positions=positions, pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
        decoder_start_token_id=start,
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        max_length=positions, pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=start,
        no_timestamps_token_id=ids.no_timestamps, is_multilingual=False, return_timestamps=False,
    )
    model.save_pretrained(staging)
    extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins, sampling_rate=16_000)
    WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(staging)
    extractor.save_pretrained(staging)  # preprocessor_config.json, which marks the folder complete
    return _publish(staging, folder)


# The keys of the "cfg" dict of an official BEATs checkpoint (BEATs_iter3_plus_AS2M*.pt).
BEATS_CHECKPOINT_CFG_KEYS = (
    "input_patch_size", "embed_dim", "conv_bias", "encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim",
    "encoder_attention_heads", "activation_fn", "layer_norm_first", "deep_norm", "conv_pos", "conv_pos_groups",
    "relative_position_embedding", "num_buckets", "max_distance", "gru_rel_pos",
)  # fmt: skip


def write_tiny_beats_checkpoint(path: str | Path, seed: int = 0) -> Path:
    """A tiny random BEATs saved in the official checkpoint layout (``{"cfg": ..., "model": state_dict}``), standing
    in for the BEATs checkpoint SALMONN uses."""
    import dataclasses

    import torch

    from abhinaya.nn.beats import BEATs, BEATsConfig

    config = BEATsConfig.tiny()
    torch.manual_seed(seed)
    cfg = {k: v for k, v in dataclasses.asdict(config).items() if k in BEATS_CHECKPOINT_CFG_KEYS}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"cfg": cfg, "model": BEATs(config).state_dict()}, path)
    return path


__all__ = [
    "BEATS_CHECKPOINT_CFG_KEYS",
    "DEMO_LLAMA",
    "TINY_LLAMA",
    "TINY_LLAMA_CHAT_TEMPLATE",
    "TINY_LLAMA_SPECIALS",
    "TINY_LLAMA_WORDS",
    "TINY_WAVLM",
    "TINY_WHISPER",
    "write_tiny_beats_checkpoint",
    "write_tiny_llama",
    "write_tiny_llama_for_texts",
    "write_tiny_wavlm",
    "write_tiny_whisper",
    "write_tiny_whisper_asr",
]
