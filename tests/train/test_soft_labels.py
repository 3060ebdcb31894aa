"""Soft labels and dimensions: the generated MSP-Podcast corpus carries annotator votes (labels_detailed.csv), the
preparer keeps them, training follows each utterance's vote distribution (X utterances, without consensus, included),
and a regression head learns arousal, valence and dominance under a concordance loss; predictions carry them and
evaluate scores their CCC."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from abhinaya.cli import main
from abhinaya.corpora.msp_podcast import prepare_msp_podcast
from abhinaya.labels import LabelSet
from abhinaya.manifest import Utterance
from abhinaya.evaluation.metrics import concordance_correlation
from abhinaya.nn.losses import (
    concordance_loss,
    soft_cross_entropy,
    vs_loss,
    weighted_cross_entropy,
    weighted_focal_loss,
)
from abhinaya.testing.dummies import make_dummy_msp_podcast
from abhinaya.train.loop import soft_targets

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.fixture(scope="module")
def msp(tmp_path_factory):
    return make_dummy_msp_podcast(tmp_path_factory.mktemp("msp") / "msp")


def test_the_preparer_keeps_each_utterance_s_votes(msp):
    kept = prepare_msp_podcast(msp, keep_unlabelled=True)
    by_id = {u.id: u for u in kept.utterances}
    labelled = [u for u in kept.utterances if u.label is not None and u.split == "train"]
    assert all(u.votes and max(u.votes, key=u.votes.get) == u.label and sum(u.votes.values()) == 5
               for u in labelled)
    no_consensus = [u for u in kept.utterances if u.label is None and u.votes]
    assert no_consensus and all(sorted(u.votes.values())[-2:] == [2.0, 2.0] for u in no_consensus)  # X: 2-2-1
    test3 = [u for u in kept.utterances if (u.split or "").startswith("test") and u.label is None]
    assert test3 and all(u.votes is None for u in test3)
    assert any("judgements of" in note and "outside the eight classes" in note for note in kept.notes)
    assert by_id  # and without keep_unlabelled the O and X rows are left out, votes or not
    assert all(u.label is not None for u in prepare_msp_podcast(msp).utterances if u.split == "train")


def test_soft_targets_normalise_votes_and_fall_back_to_the_label():
    labels = LabelSet(["angry", "sad", "neutral"])
    rows = [Utterance(id="a", label="angry", votes={"angry": 3, "sad": 1, "contempt": 1}),
            Utterance(id="b", label="sad"), Utterance(id="c", votes={"neutral": 2, "sad": 2})]
    assert soft_targets(rows, labels).tolist() == [[0.75, 0.25, 0.0], [0.0, 1.0, 0.0], [0.0, 0.5, 0.5]]


def test_every_loss_takes_distributions_and_one_hot_gives_the_hard_loss():
    torch.manual_seed(0)
    logits, target = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 1, 0])
    one_hot = torch.nn.functional.one_hot(target, 4).float()
    weight = torch.tensor([1.0, 2.0, 0.5, 1.5])
    for hard, soft in [
        (weighted_cross_entropy(logits, target, weight), weighted_cross_entropy(logits, one_hot, weight)),
        (weighted_focal_loss(logits, target, weight), weighted_focal_loss(logits, one_hot, weight)),
        (vs_loss(logits, target, [10, 5, 3, 2], weight=weight), vs_loss(logits, one_hot, [10, 5, 3, 2], weight=weight)),
    ]:
        assert float(soft) == pytest.approx(float(hard), rel=1e-5)
    # minimising the soft cross-entropy moves the model's distribution to the votes
    q = torch.tensor([[0.6, 0.3, 0.1, 0.0]])
    z = torch.zeros(1, 4, requires_grad=True)
    optimiser = torch.optim.SGD([z], lr=1.0)
    for _ in range(500):
        optimiser.zero_grad()
        soft_cross_entropy(z, q).backward()
        optimiser.step()
    assert np.allclose(torch.softmax(z, -1).detach().numpy(), q.numpy(), atol=0.01)
    with pytest.raises(ValueError, match="some mass in every row"):
        soft_cross_entropy(torch.zeros(1, 4), torch.zeros(1, 4))


def test_concordance_is_one_only_for_agreement_and_skips_missing_ratings():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert concordance_correlation(x, x) == pytest.approx(1.0)
    assert concordance_correlation(x, x + 1.0) < 0.8  # correlated but shifted: CCC, unlike Pearson, drops
    centred = x - x.mean()
    assert concordance_correlation(centred, -centred) == pytest.approx(-1.0)
    predicted = torch.tensor([[1.0, 0.0], [2.0, 1.0], [3.0, 5.0]])
    rated = torch.tensor([[1.0, float("nan")], [2.0, float("nan")], [3.0, 2.0]])
    assert float(concordance_loss(predicted, rated)) == pytest.approx(0.0, abs=1e-6)  # dimension 2 has one rating


def test_s1_multitask_trains_on_votes_and_dimensions(tmp_path, tiny_wavlm_dir, msp, capsys):
    run = tmp_path / "run"
    sets = [f"data.root={msp}", f"model.encoder={tiny_wavlm_dir}", "train.balanced_dev_per_class=1",
            "model.head_hidden=16", "model.attention_dim=8", "train.epochs=2", "train.progress=false",
            "train.batch_size=8", "train.grad_accum=1", "train.num_workers=0"]
    assert main(["train", str(RECIPES / "msp_podcast" / "s1_multitask.yaml"), "-o", str(run),
                 *sum((["--set", s] for s in sets), [])]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["train_utterances"] == 16 + 1  # the 16 labelled training rows and the X row (not the O row)
    out = capsys.readouterr().out
    assert "soft labels: 17 training utterances with annotator votes (1 of them without a consensus class)" in out
    assert "dimensions: arousal, valence, dominance from the attributes of 17 of 17 training utterances" in out
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert all(-1.0 <= record[f"ccc_{d}"] <= 1.0 for d in ("arousal", "valence", "dominance"))

    predictions = tmp_path / "test.csv"
    assert main(["predict", str(run), str(run / "data" / "splits.jsonl"), "--split", "test1", "-o",
                 str(predictions), "--no-progress"]) == 0
    dims = (tmp_path / "test.dimensions.csv").read_text().splitlines()
    assert dims[0] == "FileName,arousal,valence,dominance" and len(dims) == 1 + 16
    capsys.readouterr()
    assert main(["evaluate", str(predictions), str(run / "data" / "splits.jsonl"), "--split", "test1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["ccc"]) == {"arousal", "valence", "dominance"}
    assert report["ccc"]["arousal"]["num_utterances"] == 16

    # the dimensions come from the same pass over the audio as the classes: each batch is encoded once, and the
    # values are the dimension head of the model's own forward pass
    import numpy as np
    import torch

    from abhinaya.manifest import read_manifest
    from abhinaya.models.ssl_classifier import SSLClassifier
    from abhinaya.predict.inputs import predict_utterances_and_dimensions
    from abhinaya.runs import load_run

    loaded = load_run(run)
    utterances = [u for u in read_manifest(run / "data" / "splits.jsonl") if u.split == "test1"]
    calls = []
    original = SSLClassifier.embed

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    SSLClassifier.embed = counted
    try:
        table, dimensions = predict_utterances_and_dimensions(loaded, utterances, batch_size=4, progress=False,
                                                              report=lambda _: None)
    finally:
        SSLClassifier.embed = original
    assert len(calls) == 4 and dimensions.ids == table.ids  # 16 utterances in batches of 4, one encoding each
    dataset = loaded.member.dataset(utterances[:1], None, train=False)
    batch = loaded.member.collate([dataset[0]])
    with torch.inference_mode():
        _, direct = loaded.model(batch["waveforms"], batch["lengths"], with_dimensions=True)
    row = dimensions.ids.index(utterances[0].id)
    np.testing.assert_allclose(dimensions.values[row], direct[0].numpy(), atol=1e-5)
