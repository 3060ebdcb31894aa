"""Shared fixtures: tiny random-weight pretrained folders (no model hub)."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TINY_WHISPER = {
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


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory):
    """A folder holding a tiny random Whisper in the transformers layout,
    standing in for a pretrained checkpoint."""
    import torch
    from transformers import WhisperConfig, WhisperModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "tiny-whisper"
    WhisperModel(WhisperConfig(**TINY_WHISPER)).save_pretrained(path)
    return path


TINY_WAVLM = {
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


@pytest.fixture(scope="session")
def tiny_wavlm_dir(tmp_path_factory):
    """A tiny random WavLM (layer-normalised CNN, as WavLM-Large) standing in for WavLM-Large."""
    import torch
    from transformers import WavLMConfig, WavLMModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "tiny-wavlm"
    WavLMModel(WavLMConfig(**TINY_WAVLM)).save_pretrained(path)
    return path


# Words the tiny Llama's tokenizer knows (one token each); anything else is <unk>.
TINY_LLAMA_WORDS = (
    "angry sad happy surprise fear disgust contempt neutral calm boredom joy anger sadness surprised fearful "
    "emotion sentence text transcript : the a i you is am are not this that what why so very really oh no yes "
    "great terrible love hate wow okay fine , . ! ? user assistant system classify reply one word"
).split()
TINY_LLAMA_SPECIALS = ["<pad>", "<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TINY_LLAMA_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' ' + message['content'] + ' <|im_end|> ' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant ' }}{% endif %}"
)
TINY_LLAMA = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "tie_word_embeddings": True,
}


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """A tiny random Llama causal LM with a word-level tokenizer and a chat template,
    standing in for SmolLM2 / Llama (a folder as ``save_pretrained`` writes it)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(TINY_LLAMA_SPECIALS + TINY_LLAMA_WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
    )
    tokenizer.chat_template = TINY_LLAMA_CHAT_TEMPLATE
    path = tmp_path_factory.mktemp("models") / "tiny-llama"
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab),
        pad_token_id=vocab["<pad>"],
        bos_token_id=vocab["<|im_start|>"],
        eos_token_id=vocab["<|im_end|>"],
        **TINY_LLAMA,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    return path
