import json

import pytest

from abhinaya.manifest import (
    ManifestError,
    Utterance,
    read_manifest,
    split_utterances,
    validate_manifest,
    write_manifest,
)


def test_roundtrip_with_relative_audio(tmp_path):
    audio = tmp_path / "audio" / "a.wav"
    audio.parent.mkdir()
    audio.write_bytes(b"x")
    utts = [
        Utterance("a", str(audio), "sad", "s1", "train", "hello", 1.5),
        Utterance("b", None, None, None, "test", None, None, gender="female", attributes={"arousal": 3.5}),
    ]
    path = write_manifest(tmp_path / "m.jsonl", utts)
    first = json.loads(path.read_text().splitlines()[0])
    assert first["audio"] == "audio/a.wav"  # stored relative to the manifest
    assert "gender" not in first
    back = read_manifest(path)
    assert back[0].audio == str(audio)
    assert back[0] == utts[0]
    assert back[1].attributes == {"arousal": 3.5}
    assert [u.id for u in split_utterances(back, "test")] == ["b"]


def test_read_reports_file_and_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "a"}\n\n{"id": "b", "colour": 1}\n')
    with pytest.raises(ManifestError, match=r"m\.jsonl:3: unknown field"):
        read_manifest(path)
    path.write_text('{"id": "a"}\n{"id": "a"}\n')
    with pytest.raises(ManifestError, match=r"m\.jsonl:2: duplicate id 'a'"):
        read_manifest(path)
    path.write_text('{"id": "a"\n')
    with pytest.raises(ManifestError, match=r"m\.jsonl:1: not valid JSON"):
        read_manifest(path)
    path.write_text('{"audio": "x.wav"}\n')
    with pytest.raises(ManifestError, match="missing or empty 'id'"):
        read_manifest(path)
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path / "nope.jsonl")


def test_validate_lists_every_problem(tmp_path):
    utts = [
        Utterance("a", str(tmp_path / "missing.wav"), "sad"),
        Utterance("a", None, "excited"),
        Utterance("c", None, "happy", duration=-1.0),
    ]
    problems = validate_manifest(utts, source="m.jsonl")
    assert any("duplicate id 'a'" in p for p in problems)
    assert any("missing.wav" in p for p in problems)
    assert any("unknown label 'excited'" in p for p in problems)
    assert any("negative duration" in p for p in problems)
    assert validate_manifest([Utterance("x", None, "happy")]) == []
    assert validate_manifest([Utterance("x", None, "custom")], allowed_labels=["custom"]) == []


def test_context_roundtrip_and_validation(tmp_path):
    utts = [
        Utterance("a", None, "happy", "Ross", "train", "Hi.", None),
        Utterance("b", None, "sad", "Rachel", "train", "Bye.", None, context=["Ross: Hi."]),
    ]
    path = write_manifest(tmp_path / "m.jsonl", utts)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert "context" not in lines[0]  # omitted when empty
    assert lines[1]["context"] == ["Ross: Hi."]
    assert read_manifest(path) == utts
    path.write_text('{"id": "a", "context": "Ross: Hi."}\n')
    with pytest.raises(ManifestError, match=r"m\.jsonl:1: 'context' must be a list of strings"):
        read_manifest(path)
