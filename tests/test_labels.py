import pytest

from abhinaya.labels import (
    CANONICAL_LABELS,
    CORPUS_LABEL_SETS,
    EMODB_CODES,
    MELD_NAMES,
    MSP_PODCAST_CODES,
    RAVDESS_CODES,
    LabelSet,
    canonical_label,
)


def test_corpus_mappings_match_the_design():
    assert MSP_PODCAST_CODES == {
        "A": "angry", "S": "sad", "H": "happy", "U": "surprise",
        "F": "fear", "D": "disgust", "C": "contempt", "N": "neutral",
    }
    assert [RAVDESS_CODES[f"0{i}"] for i in range(1, 9)] == [
        "neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise"
    ]
    assert EMODB_CODES == {"W": "angry", "L": "boredom", "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}
    assert MELD_NAMES["joy"] == "happy" and MELD_NAMES["anger"] == "angry" and MELD_NAMES["sadness"] == "sad"
    for mapping in (MSP_PODCAST_CODES, RAVDESS_CODES, EMODB_CODES, MELD_NAMES):
        assert set(mapping.values()) <= set(CANONICAL_LABELS)
    assert len(CORPUS_LABEL_SETS["msp-podcast"]) == 8
    assert len(CORPUS_LABEL_SETS["emodb"]) == 7


@pytest.mark.parametrize("raw,expected", [("Angry", "angry"), (" anger ", "angry"), ("JOY", "happy"), ("fearful", "fear"), ("surprised", "surprise")])
def test_canonical_label_accepts_spellings(raw, expected):
    assert canonical_label(raw) == expected


def test_canonical_label_rejects_unknown_with_name():
    with pytest.raises(ValueError, match="'excited'"):
        canonical_label("excited")


def test_labelset_encode_decode_roundtrip(tmp_path):
    ls = LabelSet(["sad", "happy", "angry"])
    assert ls.encode("happy") == 1
    assert ls.decode(2) == "angry"
    assert ls.decode_many(ls.encode_many(["angry", "sad"])) == ["angry", "sad"]
    with pytest.raises(KeyError, match="'fear'"):
        ls.encode("fear")
    with pytest.raises(IndexError):
        ls.decode(3)
    ls.save(tmp_path / "labels.json")
    assert LabelSet.load(tmp_path / "labels.json") == ls


def test_labelset_rejects_duplicates_and_empty():
    with pytest.raises(ValueError, match="duplicate"):
        LabelSet(["sad", "sad"])
    with pytest.raises(ValueError):
        LabelSet([])


def test_labelset_from_labels_keeps_order_and_absent_classes():
    ls = LabelSet.from_labels(["sad", None, "calm", "angry"], order=["neutral", "angry"])
    assert list(ls) == ["neutral", "angry", "sad", "calm"]
    assert list(LabelSet.from_labels(["zebra", "happy"])) == ["happy", "zebra"]


def test_labelset_load_bad_file(tmp_path):
    bad = tmp_path / "labels.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="labels.json"):
        LabelSet.load(bad)
