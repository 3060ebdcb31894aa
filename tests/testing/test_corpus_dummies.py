import csv

import numpy as np
import pytest
import soundfile as sf

from abhinaya.audio import load_audio
from abhinaya.corpora import prepare_emodb, prepare_ravdess
from abhinaya.testing.dummies import (
    MELD_COLUMNS,
    MSP_PODCAST_COLUMNS,
    make_dummy_emodb,
    make_dummy_meld,
    make_dummy_msp_podcast,
    make_dummy_ravdess,
    synthesize_utterance,
)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generators_are_deterministic(tmp_path):
    for make in (make_dummy_ravdess, make_dummy_msp_podcast, make_dummy_meld):
        kwargs = {"seconds": 0.1} if make is not make_dummy_meld else {}
        if make is make_dummy_ravdess:
            kwargs["actors"] = (1, 2)
        a = make(tmp_path / make.__name__ / "a", seed=3, **kwargs)
        b = make(tmp_path / make.__name__ / "b", seed=3, **kwargs)
        c = make(tmp_path / make.__name__ / "c", seed=4, **kwargs)
        assert a == tmp_path / make.__name__ / "a"
        assert _files(a) == _files(b)
        assert _files(a) != _files(c)


def test_audio_formats(tmp_path):
    emodb = make_dummy_emodb(tmp_path / "emodb", speakers=("08",), texts=("a01",), seconds=0.5)
    info = sf.info(str(emodb / "wav" / "08a01Wa.wav"))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (22050, 1, 11025, "PCM_16")
    ravdess = make_dummy_ravdess(tmp_path / "ravdess", actors=(7,), emotions=("05",), statements=("02",),
                                 intensities=("01", "02"), extension=".flac", seconds=0.2)
    names = sorted(p.name for p in (ravdess / "Actor_07").iterdir())
    assert names == ["03-01-05-01-02-01-07.flac", "03-01-05-02-02-01-07.flac"]
    assert sf.info(str(ravdess / "Actor_07" / names[0])).samplerate == 16000
    wave = synthesize_utterance("angry", np.random.default_rng(0), sample_rate=8000, seconds=0.25)
    assert wave.shape == (2000,) and wave.dtype == np.float32 and np.abs(wave).max() <= 1.0


def test_msp_and_meld_tables_have_the_real_columns(tmp_path):
    msp = make_dummy_msp_podcast(tmp_path / "msp", n_per_split=8, seconds=0.1)
    with (msp / "Labels" / "labels_consensus.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == MSP_PODCAST_COLUMNS
    assert {r["Split_Set"] for r in rows} == {"Train", "Development", "Test1", "Test2", "Test3"}
    assert sum(r["EmoClass"] in ("O", "X") for r in rows) == 4
    assert all(r["EmoClass"] == "" and r["EmoAct"] == "" for r in rows if r["Split_Set"] == "Test3")
    assert len(list((msp / "Audios").glob("*.wav"))) == len(rows)
    assert len(list((msp / "Transcripts").glob("*.txt"))) == len(rows)
    meld = make_dummy_meld(tmp_path / "meld", test_dialogues=2)
    text = (meld / "train_sent_emo.csv").read_text(encoding="utf-8")
    assert text.startswith(",".join(MELD_COLUMNS) + "\n")
    assert '"00:' in text and "’" in text
    assert sorted(p.name for p in meld.iterdir()) == ["dev_sent_emo.csv", "test_sent_emo.csv", "train_sent_emo.csv"]


def _features(path):
    wave = load_audio(path, 16000)
    frames = np.lib.stride_tricks.sliding_window_view(wave, 512)[::256] * np.hanning(512)
    power = np.abs(np.fft.rfft(frames)) ** 2
    edges = np.unique(np.geomspace(1, 257, 20).astype(int))
    bands = np.log(np.stack([power[:, a:b].mean(1) for a, b in zip(edges[:-1], edges[1:])], 1) + 1e-10)
    loudness = np.log(frames.std(1) + 1e-6)
    return np.concatenate([bands.mean(0), bands.std(0), [loudness.mean(), loudness.std()]])


@pytest.mark.parametrize("corpus", ["ravdess", "emodb"])
def test_emotion_is_learnable_on_unseen_speakers(tmp_path, corpus):
    if corpus == "ravdess":
        result = prepare_ravdess(make_dummy_ravdess(tmp_path, seconds=0.5), test_speakers=["5", "6"], check="none")
    else:
        result = prepare_emodb(make_dummy_emodb(tmp_path, seconds=0.5), test_speakers=["10"], check="none")
    x = np.stack([_features(u.audio) for u in result.utterances])
    y = np.array([u.label for u in result.utterances])
    train = np.array([u.split == "train" for u in result.utterances])
    x = (x - x[train].mean(0)) / (x[train].std(0) + 1e-6)
    classes = sorted(set(y))
    centroids = np.stack([x[train & (y == c)].mean(0) for c in classes])
    predicted = np.array(classes)[np.argmin(((x[~train, None] - centroids[None]) ** 2).sum(-1), axis=1)]
    accuracy = (predicted == y[~train]).mean()
    assert accuracy > 3 / len(classes)
