import base64
import json
import re

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from abhinaya.evaluation.report import error_correlation, pairwise_agreement, write_system_report
from abhinaya.labels import LabelSet
from abhinaya.predictions import PredictionTable, table_from_probs

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LABELS = LabelSet(["angry", "sad", "happy", "neutral"])
MEMBERS = ("s1", "s2", "t1")
ENSEMBLES = ("majority", "soft")


def _system(split_ids, references, skill, seed, with_probs=True):
    """One table per split: the reference class gets ``skill`` extra logit (unlabelled ids: random)."""
    rng = np.random.default_rng(seed)
    tables = {}
    for split, ids in split_ids.items():
        logits = rng.normal(size=(len(ids), len(LABELS)))
        for row, utt_id in enumerate(ids):
            if utt_id in references:
                logits[row, LABELS.encode(references[utt_id])] += skill
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        table = table_from_probs(list(reversed(ids)), probs[::-1], LABELS)  # row order differs from the split's
        tables[split] = table if with_probs else PredictionTable(table.ids, table.labels)
    return tables


def _data():
    splits = {"dev": [f"dev{i:02d}" for i in range(40)], "test": [f"test{i:02d}" for i in range(60)]}
    references = {utt_id: LABELS.labels[i % 4] for ids in splits.values() for i, utt_id in enumerate(ids)}
    for utt_id in splits["test"][-5:]:  # unlabelled test ids: predicted, never scored
        del references[utt_id]
    members = {name: _system(splits, references, 1.0 + k, seed=k) for k, name in enumerate(MEMBERS)}
    ensembles = {
        "majority": _system(splits, references, 2.5, seed=10, with_probs=False),
        "soft": _system(splits, references, 3.0, seed=11),
    }
    return splits, references, members, ensembles


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    splits, references, members, ensembles = _data()
    out = tmp_path_factory.mktemp("report")
    (out / "report_stale_test.png").write_bytes(PNG_SIGNATURE)  # from an older report: removed
    result = write_system_report(
        out, title="Sample system", references=references, splits=splits, members=members, ensembles=ensembles,
        chosen="soft", reason="Soft voting had the best cross-fitted dev macro-F1.",
        notes=["dev figures of learned methods are cross-fitted", "submission: runs/x/submission.csv"],
        stage_times={"train s1": 3725.0, "ensemble": 2.5},
    )
    return out, result, splits, references, members, ensembles


def test_html_is_self_contained_with_every_png_inlined(report):
    out, result, *_ = report
    assert result.html == out / "report.html"
    page = result.html.read_text(encoding="utf-8")
    for external in ('src="http', "src='http", 'href="http', "<script", "<link", "@import", "url("):
        assert external not in page
    expected = {f"report_{kind}_{split}.png" for kind in ("scores", "per_class", "agreement", "error_correlation")
                for split in ("dev", "test")}
    expected |= {f"report_confusion_{name}_{split}.png" for name in MEMBERS + ENSEMBLES for split in ("dev", "test")}
    assert {p.name for p in result.pngs} == expected
    assert {p.name for p in out.glob("*.png")} == expected  # the stale figure is gone
    inlined = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(inlined) == len(result.pngs)
    for path in result.pngs:
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert base64.b64encode(data).decode("ascii") in inlined
    assert len(page) < 3_000_000
    # test before dev; notes and stage times shown
    assert page.index('id="split-test"') < page.index('id="split-dev"')
    assert "dev figures of learned methods are cross-fitted" in page
    assert "submission: runs/x/submission.csv" in page
    assert "train s1" in page and "1 h 02 min 05 s" in page


def test_metrics_json_matches_sklearn(report):
    out, result, splits, references, members, ensembles = report
    stored = json.loads((out / "metrics.json").read_text())
    assert stored == result.metrics
    assert list(stored) == ["test", "dev"]
    assert set(stored["test"]) == set(MEMBERS + ENSEMBLES)
    for split in ("dev", "test"):
        ids = [i for i in splits[split] if i in references]
        truth = [references[i] for i in ids]
        for name, tables in {**members, **ensembles}.items():
            index = tables[split].by_id()
            predicted = [tables[split].labels[index[i]] for i in ids]
            got = stored[split][name]
            assert got["num_utterances"] == len(ids)
            assert got["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))
            assert got["ua"] == pytest.approx(balanced_accuracy_score(truth, predicted))
            assert got["wa"] == pytest.approx(accuracy_score(truth, predicted))
            assert got["labels"] == list(LABELS)
    assert stored["test"]["s1"]["num_utterances"] == 55  # the 5 unlabelled test ids are not scored


def test_chosen_method_and_reason_at_the_top(report):
    _, result, *_ = report
    page = result.html.read_text(encoding="utf-8")
    summary = page[page.index('<section class="summary">'):page.index('id="split-test"')]
    assert '<strong class="chosen-name">soft</strong>' in summary
    assert "Soft voting had the best cross-fitted dev macro-F1." in summary
    chosen_rows = re.findall(r'<tr class="[^"]*\bchosen\b[^"]*"><td>([^<]*)<span class="badge">chosen</span>', page)
    assert chosen_rows and set(chosen_rows) == {"soft"}
    assert len(chosen_rows) == 4  # score and per-class tables of test and dev


def test_data_strings_are_escaped(tmp_path):
    splits, references, members, ensembles = _data()
    splits = {"test": splits["test"], "extra": ["u1", "u2"]}  # extra: unlabelled, no tables; not scored
    evil = "<script>alert(1)</script>"
    members = {evil: members["s1"], "s2": members["s2"]}
    result = write_system_report(
        tmp_path, title="A & B <i>", references=references, splits=splits, members=members,
        ensembles={"soft": ensembles["soft"]}, chosen=evil, reason='best "dev" score <b>',
        notes=["x < y & z"],
    )
    page = result.html.read_text(encoding="utf-8")
    assert "<script" not in page and "<b>" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "best &quot;dev&quot; score &lt;b&gt;" in page
    assert "x &lt; y &amp; z" in page and "A &amp; B &lt;i&gt;" in page
    assert '<strong class="chosen-name">&lt;script&gt;alert(1)&lt;/script&gt;</strong>' in page
    for path in result.pngs:  # a file-name-safe stem, inside the folder
        assert path.parent == tmp_path and "<" not in path.name and "/" not in path.name
        assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert evil in result.metrics["test"]
    assert list(result.metrics) == ["test"]
    assert "Split extra is not scored: no reference labels." in page


def test_missing_id_is_an_error_naming_table_and_id(tmp_path):
    splits, references, members, ensembles = _data()
    table = members["s2"]["test"]
    keep = [i for i in table.ids if i != "test07"]
    members["s2"]["test"] = table.reorder(keep)
    with pytest.raises(ValueError, match=r"member 's2', split 'test'.*'test07'"):
        write_system_report(
            tmp_path, title="t", references=references, splits=splits, members=members, ensembles=ensembles,
            chosen="soft", reason="r",
        )
    assert not (tmp_path / "report.html").exists()


def test_invalid_arguments(tmp_path):
    splits, references, members, ensembles = _data()
    common = dict(title="t", references=references, splits=splits, members=members, reason="r")
    with pytest.raises(ValueError, match="'stacking' is neither"):
        write_system_report(tmp_path, ensembles=ensembles, chosen="stacking", **common)
    with pytest.raises(ValueError, match="both as a member and as an ensemble method: s1"):
        write_system_report(tmp_path, ensembles={**ensembles, "s1": ensembles["soft"]}, chosen="soft", **common)
    with pytest.raises(ValueError, match="no split can be scored .test: no reference labels; dev: no reference"):
        write_system_report(tmp_path, ensembles=ensembles, chosen="soft", **{**common, "references": {}})


def test_pairwise_agreement():
    predicted = {"a": ["x", "y", "x", "y"], "b": ["x", "x", "x", "y"], "c": ["y", "x", "y", "x"]}
    agreement = pairwise_agreement(predicted)
    assert agreement.shape == (3, 3)
    np.testing.assert_allclose(np.diag(agreement), 1.0)
    np.testing.assert_allclose(agreement, agreement.T)
    assert agreement[0, 1] == pytest.approx(0.75)
    assert agreement[0, 2] == pytest.approx(0.0)
    assert agreement[1, 2] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="same"):
        pairwise_agreement({"a": ["x"], "b": ["x", "y"]})


def test_error_correlation():
    truth = ["x", "y", "x", "y", "x", "y"]
    predicted = {
        "a": ["y", "y", "x", "x", "x", "y"],  # errors 1 0 0 1 0 0
        "same": ["y", "y", "x", "x", "x", "y"],  # the same errors
        "opposite": ["x", "x", "y", "y", "y", "x"],  # errs exactly where a is right
        "perfect": list(truth),  # no error: undefined
        "other": ["y", "x", "x", "y", "x", "y"],  # errors 1 1 0 0 0 0
    }
    corr = error_correlation(predicted, truth)
    assert corr.shape == (5, 5)
    assert corr[0, 0] == pytest.approx(1.0)
    assert corr[0, 1] == pytest.approx(1.0)
    assert corr[0, 2] == pytest.approx(-1.0)
    assert np.isnan(corr[3]).all() and np.isnan(corr[:, 3]).all()
    errors_a = np.array([1, 0, 0, 1, 0, 0])
    errors_other = np.array([1, 1, 0, 0, 0, 0])
    assert corr[0, 4] == pytest.approx(np.corrcoef(errors_a, errors_other)[0, 1])
    np.testing.assert_allclose(corr, corr.T, equal_nan=True)
    with pytest.raises(ValueError, match="same"):
        error_correlation({"a": ["x"]}, ["x", "y"])
