"""Transcripts as model input: templates, conversation context and the pooling mask."""

import pytest
import torch

from abhinaya.data.text import (
    TextConfig,
    TextDataset,
    TextError,
    collate_text,
    cut_words,
    pad_token_ids,
)
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


def test_raw_text_items_are_the_rendered_transcripts_cut_to_max_words():
    rows = [*ROWS, Utterance("c", None, None, None, "dev", "  one two three four five ", None)]
    data = TextDataset(rows, LABELS, None, TextConfig(template="{speaker}: {text}", max_words=3))
    assert not data.tokenized
    assert data.texts == ["joy: oh wow", "you: no no no", "unknown: one two three"]
    assert data.lengths == [3, 4, 4]  # words, for length bucketing
    assert data[2] == {"index": 2, "id": "c", "text": "unknown: one two three", "label": -1}
    batch = collate_text([data[0], data[2]])
    assert batch["texts"] == ["joy: oh wow", "unknown: one two three"] and batch["ids"] == ["a", "c"]
    assert batch["labels"].tolist() == [LABELS.encode("happy"), -1] and batch["index"].tolist() == [0, 2]
    assert "input_ids" not in batch


def test_tokenized_datasets_keep_no_texts_and_need_a_pad_id(tokenizer):
    data = TextDataset(ROWS, LABELS, tokenizer, TextConfig(max_words=1))
    assert data.tokenized and words(tokenizer, data[1]["input_ids"]) == ["no"]
    with pytest.raises(AttributeError, match="token ids"):
        data.texts
    with pytest.raises(ValueError, match="pad_id"):
        collate_text(list(data))
    with pytest.raises(ValueError, match="max_words"):
        TextConfig(max_words=0)


def test_cut_words():
    assert cut_words("a  b c", 2) == "a b" and cut_words("a  b", 2) == "a  b" and cut_words("a b c", None) == "a b c"


def test_pad_token_ids_right_and_left():
    ids, mask = pad_token_ids([[5, 6, 7], [8], []], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    ids, mask = pad_token_ids([[5, 6], [8]], pad_id=9, side="left", width=3)
    assert ids.tolist() == [[9, 5, 6], [9, 9, 8]] and mask.tolist() == [[0, 1, 1], [0, 0, 1]]
    assert pad_token_ids([], pad_id=0)[0].shape == (0, 1)
    with pytest.raises(ValueError, match="more than the width"):
        pad_token_ids([[1, 2, 3]], pad_id=0, width=2)
