"""``abhinaya predict --corrupt``: every input corrupted before the model (data/corruption.py), said in one line."""

import numpy as np

from abhinaya.cli import main
from abhinaya.predictions import read_predictions


def test_predict_corrupt_changes_the_input_and_names_it(tmp_path, speaker_norm_run, corpus, capsys):
    files = sorted((corpus / "Actor_05").glob("*.wav"))[:6]
    clean, noisy = tmp_path / "clean.csv", tmp_path / "noisy.csv"
    assert main(["predict", str(speaker_norm_run), *map(str, files), "-o", str(clean), "--no-progress"]) == 0
    assert main(["predict", str(speaker_norm_run), *map(str, files), "-o", str(noisy), "--no-progress",
                 "--corrupt", "telephone+noise:snr=0"]) == 0
    assert "corrupting every input: telephone band, codec any; noise colour 0 dB/octave at 0 dB SNR" in \
        capsys.readouterr().err
    a, b = read_predictions(clean), read_predictions(noisy)
    assert a.ids == b.ids and np.abs(a.probs - b.probs).max() > 1e-3
    assert main(["predict", str(speaker_norm_run), str(files[0]), "-o", str(tmp_path / "x.csv"),
                 "--corrupt", "thunder"]) == 1
    assert "--corrupt: corruption 'thunder'" in capsys.readouterr().err
