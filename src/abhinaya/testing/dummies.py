"""Small synthetic corpora in the real layouts of RAVDESS, EmoDB, MSP-Podcast
and MELD, for tests and for ``abhinaya demo``.

The audio is not speech, but it carries the emotion in ways simple spectral
features can pick up on speakers never seen in training: every emotion has
its own pitch range and contour, harmonic richness, loudness and rate of
syllable-like amplitude modulation; each speaker shifts pitch and loudness
by less than the differences between emotions; every file gets its own small
random variation and background noise. The MELD and MSP-Podcast texts use
emotion-related words, so a text classifier can learn too.

Every generator is deterministic given ``seed`` and returns the root folder.
"""

from __future__ import annotations

import csv
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from abhinaya.labels import EMODB_CODES, MELD_NAMES, MSP_PODCAST_CODES, RAVDESS_CODES


@dataclass(frozen=True)
class _Voice:
    f0: float  # Hz, middle of the utterance
    contour: float  # semitones from start to end
    harmonics: int
    rolloff: float  # harmonic k has amplitude k ** -rolloff
    loudness: float  # peak amplitude before the speaker's gain
    syllable_rate: float  # Hz of the amplitude modulation
    breath: float  # share of noise in the voice


_VOICES: dict[str, _Voice] = {
    "neutral": _Voice(140, 0.0, 6, 1.6, 0.30, 3.0, 0.02),
    "calm": _Voice(122, -1.0, 4, 2.2, 0.22, 2.0, 0.04),
    "happy": _Voice(215, 3.0, 10, 1.0, 0.50, 5.5, 0.02),
    "sad": _Voice(108, -4.0, 3, 2.6, 0.16, 1.5, 0.06),
    "angry": _Voice(185, -1.0, 18, 0.6, 0.75, 7.5, 0.05),
    "fear": _Voice(265, 1.0, 7, 1.3, 0.35, 10.0, 0.10),
    "disgust": _Voice(150, -2.0, 12, 0.9, 0.40, 2.5, 0.15),
    "surprise": _Voice(240, 8.0, 8, 1.2, 0.55, 4.0, 0.03),
    "contempt": _Voice(130, -3.0, 9, 1.1, 0.28, 2.2, 0.08),
    "boredom": _Voice(98, -1.5, 5, 1.9, 0.18, 1.2, 0.03),
}


def _rng(seed: int, *keys: object) -> np.random.Generator:
    """A generator that depends only on the seed and the keys (not on order of use)."""
    return np.random.default_rng([seed] + [zlib.crc32(str(k).encode()) for k in keys])


def _speaker_traits(seed: int, speaker: object, gender: str | None) -> tuple[float, float]:
    """(pitch factor, gain) of a speaker: within about +-12 % pitch and +-15 % gain."""
    rng = _rng(seed, "speaker", speaker)
    pitch = {"male": 0.95, "female": 1.05}.get(gender or "", 1.0) * float(rng.uniform(0.93, 1.07))
    return pitch, float(rng.uniform(0.85, 1.15))


def synthesize_utterance(
    label: str,
    rng: np.random.Generator,
    *,
    sample_rate: int = 16_000,
    seconds: float = 1.0,
    pitch_factor: float = 1.0,
    gain: float = 1.0,
) -> np.ndarray:
    """A mono float32 signal of ``seconds`` whose acoustics depend on ``label``
    (a canonical emotion name), shifted by a speaker's ``pitch_factor`` and
    ``gain`` and varied by ``rng``. Shape ``(round(seconds * sample_rate),)``."""
    voice = _VOICES[label]
    n = max(1, int(round(seconds * sample_rate)))
    t = np.arange(n, dtype=np.float64) / sample_rate
    progress = t / max(seconds, 1e-9) - 0.5
    f0 = voice.f0 * pitch_factor * float(rng.uniform(0.94, 1.06))
    vibrato = 1.0 + 0.01 * np.sin(2 * np.pi * float(rng.uniform(4.0, 6.0)) * t)
    f0_track = f0 * 2.0 ** (voice.contour * progress / 12.0) * vibrato
    phase = 2 * np.pi * np.cumsum(f0_track) / sample_rate
    harmonics = max(2, voice.harmonics + int(rng.integers(-2, 3)))
    rolloff = voice.rolloff * float(rng.uniform(0.85, 1.15))
    k = np.arange(1, harmonics + 1, dtype=np.float64)[:, None]
    amplitude = k ** -rolloff * (k * f0_track.max() < 0.45 * sample_rate)
    offsets = rng.uniform(0, 2 * np.pi, size=(harmonics, 1))
    tone = (amplitude * np.sin(k * phase[None, :] + offsets)).sum(axis=0)
    tone /= np.abs(tone).max() + 1e-9
    noise = rng.standard_normal(n)
    voiced = (1.0 - voice.breath) * tone + voice.breath * 3.0 * noise / (np.abs(noise).max() + 1e-9)
    rate = voice.syllable_rate * float(rng.uniform(0.8, 1.2))
    envelope = 0.2 + 0.8 * (0.5 - 0.5 * np.cos(2 * np.pi * rate * t + float(rng.uniform(0, 2 * np.pi))))
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)
    level = voice.loudness * gain * float(rng.uniform(0.75, 1.25))
    background = float(rng.uniform(0.002, 0.03))
    wave = level * voiced * envelope * fade + background * rng.standard_normal(n)
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def _write_wav(path: Path, wave: np.ndarray, sample_rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, sample_rate, subtype="PCM_16")


def make_dummy_ravdess(
    root: str | Path,
    actors=(1, 2, 3, 4, 5, 6),
    *,
    emotions=tuple(RAVDESS_CODES),
    intensities=("01",),
    statements=("01", "02"),
    repetitions=("01",),
    sample_rate: int = 16_000,
    seconds: float = 1.0,
    seed: int = 0,
    extension: str = ".wav",
) -> Path:
    """RAVDESS speech layout: ``root/Actor_XX/03-01-EE-II-SS-RR-XX.wav``.

    By default 6 actors x 8 emotions x 2 statements, normal intensity, first
    repetition (96 files). Neutral has no strong intensity, as in the corpus.
    """
    root = Path(root)
    for actor in actors:
        actor = int(actor)
        pitch, gain = _speaker_traits(seed, f"ravdess{actor}", "male" if actor % 2 else "female")
        for emotion in emotions:
            for intensity in intensities:
                if emotion == "01" and intensity != "01":
                    continue
                for statement in statements:
                    for repetition in repetitions:
                        stem = f"03-01-{emotion}-{intensity}-{statement}-{repetition}-{actor:02d}"
                        rng = _rng(seed, "ravdess", stem)
                        scale = 1.15 if intensity == "02" else 1.0
                        wave = synthesize_utterance(
                            RAVDESS_CODES[emotion], rng, sample_rate=sample_rate, seconds=seconds,
                            pitch_factor=pitch, gain=gain * scale,
                        )
                        _write_wav(root / f"Actor_{actor:02d}" / f"{stem}{extension}", wave, sample_rate)
    return root


def make_dummy_emodb(
    root: str | Path,
    speakers=("03", "08", "09", "10"),
    *,
    texts=("a01", "b01"),
    versions=("a",),
    sample_rate: int = 22_050,
    seconds: float = 1.0,
    seed: int = 0,
) -> Path:
    """EmoDB layout: ``root/wav/SSTTTEV.wav`` at 22.05 kHz. By default 4
    speakers x 7 emotions x 2 texts (56 files)."""
    from abhinaya.corpora.emodb import EMODB_GENDERS

    root = Path(root)
    for speaker in speakers:
        speaker = f"{int(speaker):02d}"
        pitch, gain = _speaker_traits(seed, f"emodb{speaker}", EMODB_GENDERS.get(speaker))
        for text in texts:
            for letter, label in EMODB_CODES.items():
                for version in versions:
                    stem = f"{speaker}{text}{letter}{version}"
                    rng = _rng(seed, "emodb", stem)
                    wave = synthesize_utterance(
                        label, rng, sample_rate=sample_rate, seconds=seconds, pitch_factor=pitch, gain=gain
                    )
                    _write_wav(root / "wav" / f"{stem}.wav", wave, sample_rate)
    return root


_WORDS: dict[str, tuple[str, ...]] = {
    "happy": ("great", "wonderful", "love", "amazing", "fantastic", "yay", "awesome", "so happy"),
    "angry": ("hate", "stupid", "furious", "shut up", "ridiculous", "how dare you", "sick of this", "damn"),
    "sad": ("sorry", "miss", "lonely", "cry", "lost", "heartbroken", "terrible", "alone"),
    "surprise": ("what", "really", "oh my god", "no way", "seriously", "wow", "unbelievable", "whoa"),
    "fear": ("scared", "afraid", "terrified", "nervous", "help", "careful", "creepy", "panic"),
    "disgust": ("gross", "ew", "disgusting", "yuck", "nasty", "revolting", "smells", "eww"),
    "contempt": ("pathetic", "whatever", "please", "typical", "beneath", "clueless", "amateur", "spare me"),
    "neutral": ("okay", "the apartment", "tomorrow", "coffee", "the meeting", "on Tuesday", "the car", "downstairs"),
}
_OPENERS = ("", "Well, ", "Oh, ", "I mean, ", "Honestly, ", "Look, ", "So ", "Y’know, ")
_CLOSERS = (".", "!", "…", "?", " — right.", ", that’s it.")
_FRAMES = (
    "{o}I’m {w}{c}",
    "{o}it’s {w}{c}",
    "{o}that’s {w}, {w2}{c}",
    "{o}you’re {w}{c}",
    "{o}he said “{w}”{c}",
    "{o}we’ve got {w} and {w2}{c}",
)


def _sentence(label: str, rng: np.random.Generator) -> str:
    words = _WORDS[label]
    text = str(rng.choice(_FRAMES)).format(
        o=str(rng.choice(_OPENERS)), w=str(rng.choice(words)), w2=str(rng.choice(words)), c=str(rng.choice(_CLOSERS))
    )
    return text[0].upper() + text[1:]


_MSP_MEANS: dict[str, tuple[float, float, float]] = {  # arousal, valence, dominance on 1..7
    "A": (5.8, 2.2, 5.5),
    "S": (2.6, 2.4, 3.0),
    "H": (5.0, 5.8, 4.6),
    "U": (5.2, 4.4, 4.0),
    "F": (5.0, 2.6, 2.8),
    "D": (4.2, 2.5, 4.4),
    "C": (3.8, 3.0, 5.0),
    "N": (3.6, 4.0, 4.0),
    "O": (4.0, 3.8, 4.0),
    "X": (4.2, 3.9, 4.1),
}
_MSP_SPLITS = ("Train", "Development", "Test1", "Test2")
MSP_PODCAST_COLUMNS = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")


def make_dummy_msp_podcast(
    root: str | Path,
    n_per_split: int = 16,
    *,
    speakers_per_split: int = 2,
    n_test3: int = 4,
    with_transcripts: bool = True,
    sample_rate: int = 16_000,
    seconds: float = 1.0,
    seed: int = 0,
) -> Path:
    """MSP-Podcast layout: ``root/Labels/labels_consensus.csv``,
    ``root/Labels/labels_detailed.csv`` (annotator votes), ``root/Audios/*.wav``,
    ``root/Transcripts/*.txt``.

    Train, Development, Test1 and Test2 get ``n_per_split`` labelled rows each
    (the eight classes in turn, speakers disjoint between splits); Train and
    Development get one extra O row and one extra X row; the first Train
    speaker is ``Unknown``; Test3 gets ``n_test3`` rows with no labels and no
    speaker.
    """
    root = Path(root)
    codes = list(MSP_PODCAST_CODES)
    rows: list[dict[str, str]] = []
    voices: dict[str, tuple[str, float, float]] = {}
    speaker_number = 100
    for split_index, split_set in enumerate(_MSP_SPLITS):
        split_codes = [codes[i % len(codes)] for i in range(n_per_split)]
        if split_set in ("Train", "Development"):
            split_codes += ["O", "X"]
        for i, code in enumerate(split_codes):
            slot = i % speakers_per_split
            spkr = speaker_number + slot
            gender = "Male" if spkr % 2 else "Female"
            podcast = 10 * (split_index + 1) + slot
            stem = f"MSP-PODCAST_{podcast:04d}_{i + 1:04d}"
            rng = _rng(seed, "msp", stem)
            act, val, dom = (float(np.clip(m + rng.normal(0, 0.4), 1, 7)) for m in _MSP_MEANS[code])
            unknown = split_set == "Train" and slot == 0
            rows.append(
                {
                    "FileName": f"{stem}.wav",
                    "EmoClass": code,
                    "EmoAct": f"{act:.1f}",
                    "EmoVal": f"{val:.1f}",
                    "EmoDom": f"{dom:.1f}",
                    "SpkrID": "Unknown" if unknown else str(spkr),
                    "Gender": "Unknown" if unknown else gender,
                    "Split_Set": split_set,
                }
            )
            voice = MSP_PODCAST_CODES.get(code, "neutral")
            pitch, gain = _speaker_traits(seed, f"msp{spkr}", gender.lower())
            voices[stem] = (voice, pitch, gain)
        speaker_number += 10
    for i in range(n_test3):
        stem = f"MSP-PODCAST_{90 + i % 3:04d}_{i + 1:04d}"
        rows.append({"FileName": f"{stem}.wav", "Split_Set": "Test3", "SpkrID": "Unknown", "Gender": "Unknown"})
        voices[stem] = (MSP_PODCAST_CODES[codes[i % len(codes)]], 1.0, 1.0)

    labels = root / "Labels" / "labels_consensus.csv"
    labels.parent.mkdir(parents=True, exist_ok=True)
    with labels.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MSP_PODCAST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({column: row.get(column, "") for column in MSP_PODCAST_COLUMNS})
    _write_detailed_labels(root / "Labels" / "labels_detailed.csv", rows, seed)
    for stem, (voice, pitch, gain) in voices.items():
        rng = _rng(seed, "msp-audio", stem)
        wave = synthesize_utterance(voice, rng, sample_rate=sample_rate, seconds=seconds, pitch_factor=pitch, gain=gain)
        _write_wav(root / "Audios" / f"{stem}.wav", wave, sample_rate)
        if with_transcripts:
            path = root / "Transcripts" / f"{stem}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_sentence(voice, _rng(seed, "msp-text", stem)) + "\n", encoding="utf-8")
    return root


MSP_DETAILED_COLUMNS = ("FileName", "Annotator", "EmoClass_Major", "EmoAct", "EmoVal", "EmoDom")
_MSP_LONG_NAMES = {"A": "Angry", "S": "Sad", "H": "Happy", "U": "Surprise", "F": "Fear", "D": "Disgust",
                   "C": "Contempt", "N": "Neutral"}


def _write_detailed_labels(path: Path, rows: list[dict[str, str]], seed: int) -> None:
    """``labels_detailed.csv``: one row per annotator judgement, as the release lays it out. A labelled utterance
    gets 5 votes, 3 or 4 of them its consensus class and the rest others; an X utterance (no consensus) 5 votes
    split between two classes (2-2-1); an O utterance votes Other; Test3 has none."""
    long_names = list(_MSP_LONG_NAMES.values())
    annotator = 1
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MSP_DETAILED_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            code = row.get("EmoClass", "")
            if not code:
                continue
            rng = _rng(seed, "msp-votes", row["FileName"])
            if code in _MSP_LONG_NAMES:
                agree = int(rng.integers(3, 5))
                others = [n for n in long_names if n != _MSP_LONG_NAMES[code]]
                votes = [_MSP_LONG_NAMES[code]] * agree + list(rng.choice(others, size=5 - agree))
            elif code == "X":
                first, second, third = rng.choice(long_names, size=3, replace=False)
                votes = [first, first, second, second, third]
            else:
                votes = ["Other"] * 3 + list(rng.choice(long_names, size=2))
            for vote in votes:
                writer.writerow({"FileName": row["FileName"], "Annotator": f"WORKER{annotator:05d}",
                                 "EmoClass_Major": vote, "EmoAct": row.get("EmoAct", ""),
                                 "EmoVal": row.get("EmoVal", ""), "EmoDom": row.get("EmoDom", "")})
                annotator += 1


MELD_COLUMNS = (
    "Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID",
    "Utterance_ID", "Season", "Episode", "StartTime", "EndTime",
)
_MELD_PATTERN = ("neutral",) * 6 + ("joy",) * 4 + ("surprise",) * 3 + ("anger",) * 3 + ("sadness",) * 2 + ("disgust", "fear")
_MELD_SPEAKERS = ("Chandler", "Monica", "Ross", "Rachel", "Joey", "Phoebe", "The Interviewer", "Mr. Geller")
_SENTIMENT = {"neutral": "neutral", "joy": "positive", "surprise": "positive", "anger": "negative",
              "sadness": "negative", "disgust": "negative", "fear": "negative"}


def _timestamp(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def make_dummy_meld(
    root: str | Path,
    *,
    train_dialogues: int = 20,
    dev_dialogues: int = 6,
    test_dialogues: int = 0,
    utterances_per_dialogue: int = 5,
    seed: int = 0,
) -> Path:
    """MELD layout: ``root/{train,dev,test}_sent_emo.csv`` with the real
    columns (quoted times, typographic characters). Emotions follow MELD's
    skew (neutral most frequent) and every emotion occurs in every split of
    at least 20 utterances; dialogue ids restart at 0 in each split."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split, dialogues in (("train", train_dialogues), ("dev", dev_dialogues), ("test", test_dialogues)):
        if dialogues <= 0:
            continue
        rng = _rng(seed, "meld", split)
        total = dialogues * utterances_per_dialogue
        emotions: list[str] = []
        while len(emotions) < total:
            emotions += list(rng.permutation(_MELD_PATTERN))
        path = root / f"{split}_sent_emo.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(MELD_COLUMNS)
            number = 1
            for dialogue in range(dialogues):
                season, episode = int(rng.integers(1, 11)), int(rng.integers(1, 25))
                clock = float(rng.uniform(30, 1200))
                for utterance in range(utterances_per_dialogue):
                    emotion = str(emotions[dialogue * utterances_per_dialogue + utterance])
                    text = _sentence(MELD_NAMES[emotion], rng)
                    length = float(rng.uniform(0.8, 4.0))
                    writer.writerow([
                        number, text, str(rng.choice(_MELD_SPEAKERS)), emotion, _SENTIMENT[emotion],
                        dialogue, utterance, season, episode, _timestamp(clock), _timestamp(clock + length),
                    ])
                    clock += length + float(rng.uniform(0.1, 1.0))
                    number += 1 + int(rng.random() < 0.1)
    return root
