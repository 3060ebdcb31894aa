"""Transcripts as model input: templates, conversation context and the pooling mask."""

import pytest
import torch

from abhinaya.data.text import TextConfig, TextDataset, TextError, collate_text
from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama_dir)


LABELS = LabelSet(["happy", "sad"])
ROWS = [
    Utterance("a", None, "happy", "joy", "train", "oh wow", None),
    Utterance("b", None, "sad", "you", "train", "no no no", None, context=["i love you", "what ?", "okay"]),
]


def words(tokenizer, ids):
    return tokenizer.convert_ids_to_tokens(ids)


def test_without_context_everything_is_pooled_and_context_is_ignored(tokenizer):
    data = TextDataset(ROWS, LABELS, tokenizer, TextConfig())
    assert [item["content_start"] for item in data] == [0, 0]
    assert words(tokenizer, data[1]["input_ids"]) == ["no", "no", "no"]
    batch = collate_text(list(data), tokenizer.pad_token_id)
    assert torch.equal(batch["pool_mask"], batch["attention_mask"].bool())


def test_context_turns_come_first_and_only_the_utterance_is_pooled(tokenizer):
    data = TextDataset(ROWS, LABELS, tokenizer, TextConfig(context_turns=2, template="{speaker} : {text}"))
    first, second = data[0], data[1]
    assert words(tokenizer, first["input_ids"]) == ["joy", ":", "oh", "wow"]
    assert first["content_start"] == 0  # no earlier turns: nothing in front
    # The last two turns, oldest first, then the utterance.
    assert words(tokenizer, second["input_ids"]) == ["what", "?", "okay", "you", ":", "no", "no", "no"]
    assert second["content_start"] == 3
    batch = collate_text([first, second], tokenizer.pad_token_id)
    assert batch["pool_mask"][1].tolist() == [False] * 3 + [True] * 5
    assert batch["pool_mask"][0].tolist() == [True] * 4 + [False] * 4  # padding is never pooled


def test_context_is_cut_from_the_oldest_token(tokenizer):
    config = TextConfig(context_turns=3, context_tokens=2, max_tokens=2)
    item = TextDataset(ROWS, LABELS, tokenizer, config)[1]
    assert words(tokenizer, item["input_ids"]) == ["?", "okay", "no", "no"]
    assert item["content_start"] == 2
    none = TextDataset(ROWS, LABELS, tokenizer, TextConfig(context_turns=3, context_tokens=0))[1]
    assert none["content_start"] == 0 and words(tokenizer, none["input_ids"]) == ["no", "no", "no"]


def test_special_tokens_go_before_the_context(tokenizer):
    class WithBos:  # the tiny tokenizer adds no BOS; wrap it so that it does, as many LLM tokenizers do
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, texts, add_special_tokens=True):
            out = self.inner(texts, add_special_tokens=False)
            if add_special_tokens:
                bos = self.inner.bos_token_id
                ids = out["input_ids"]
                out["input_ids"] = [[bos] + list(x) for x in ids] if isinstance(texts, list) else [bos] + list(ids)
            return out

    item = TextDataset(ROWS, LABELS, WithBos(tokenizer), TextConfig(context_turns=1))[1]
    assert words(tokenizer, item["input_ids"]) == ["<|im_start|>", "okay", "no", "no", "no"]
    assert item["content_start"] == 2


def test_bad_settings_and_rows(tokenizer):
    with pytest.raises(ValueError, match="context_turns must be >= 0"):
        TextConfig(context_turns=-1)
    with pytest.raises(ValueError, match="must contain \\{text\\}"):
        TextConfig(template="{speaker}")
    empty = Utterance("c", None, "sad", None, "train", "  ", None, context=["okay"])
    with pytest.raises(TextError, match="c: no transcript"):
        TextDataset([empty], LABELS, tokenizer, TextConfig(context_turns=1))
    data = TextDataset([empty, ROWS[1]], LABELS, tokenizer, TextConfig(context_turns=1), on_error="skip")
    assert data.ids == ["b"] and data.errors and "c: no transcript" in data.errors[0]
