"""ONNX export of S1 (abhinaya.export): tiny random-weight run folders exported, onnxruntime compared with PyTorch
at several lengths and batch sizes, prediction through the exported file, refusals and the CLI."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from abhinaya.cli import main  # noqa: E402
from abhinaya.export import (  # noqa: E402
    DEFAULT_TOLERANCE,
    OnnxExportError,
    export_onnx,
    is_onnx_model,
    load_onnx_model,
    load_onnx_run,
    read_sidecar,
)
from abhinaya.export.graphs import s1_graph  # noqa: E402
from abhinaya.export.onnx_export import pad_batch, synthetic_utterance  # noqa: E402
from abhinaya.labels import LabelSet  # noqa: E402
from abhinaya.manifest import Utterance  # noqa: E402
from abhinaya.predict.inputs import predict_utterances  # noqa: E402
from abhinaya.runs import (  # noqa: E402
    LABELS_FILE,
    REFERENCE_MEAN_FILE,
    WEIGHTS_FILE,
    load_run,
    recipe_from_dict,
    save_recipe,
)
from abhinaya.weights.checkpoint import save_tensors  # noqa: E402

LABELS = ["neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise"]
LENGTHS = (4_000, 13_337, 27_011)  # 0.25 s, 0.83 s, 1.69 s
# The tiny WavLM keeps one frame per 20 samples (WavLM-Large: 320), so it is checked on shorter audio.
WAVLM_LENGTHS = (1_000, 2_345, 5_111)


def make_s1_run(folder, encoder_dir, **model):
    """An S1 run folder as training leaves it, without training: the tiny pretrained encoder, a head with random
    (non-trivial) weights and running statistics, and a reference mean."""
    recipe = recipe_from_dict({
        "member": "s1",
        "data": {"corpus": "ravdess"},
        "model": {"encoder": str(encoder_dir), "attention_dim": 8, "head_hidden": 16, "head_norm": "running", **model},
        "predict": {"speaker_norm_prior": 1.0},
    })
    from abhinaya.members import get_member

    member = get_member("s1")(recipe)
    torch.manual_seed(0)
    model_, resolved = member.build(LabelSet(LABELS), pretrained=True)
    with torch.no_grad():
        for p in model_.head.parameters():
            p.add_(0.3 * torch.randn_like(p))
        if model_.layer_weights is not None:
            model_.layer_weights.normal_()
        model_.head.norm.running_mean.normal_(0, 0.3)
        model_.head.norm.running_var.uniform_(0.2, 2.0)
    folder.mkdir(parents=True)
    save_recipe(folder, resolved)
    LabelSet(LABELS).save(folder / LABELS_FILE)
    save_tensors(folder / WEIGHTS_FILE, model_.state_dict())
    save_tensors(folder / REFERENCE_MEAN_FILE, {"mean": torch.randn(model_.head.fc1.in_features) * 0.1})
    return folder


def waves_at(lengths, seed=0):
    return [synthetic_utterance(n, seed=seed + i) for i, n in enumerate(lengths)]


@pytest.fixture(scope="module")
def whisper_export(tmp_path_factory, tiny_whisper_dir):
    root = tmp_path_factory.mktemp("export-whisper")
    run = make_s1_run(root / "run", tiny_whisper_dir)
    result = export_onnx(run, root / "out" / "s1.onnx", report=lambda _: None)
    return run, result


def assert_matches(run_dir, onnx_path, lengths, batch_sizes=(1, 3), width_extra=0):
    run = load_run(run_dir)
    onnx_model = load_onnx_model(onnx_path)
    waves = waves_at(lengths)
    groups = [[i] for i in range(len(waves))] if 1 in batch_sizes else []
    if 3 in batch_sizes:
        groups.append(list(range(len(waves))))
    for group in groups:
        batch, lens = pad_batch([waves[i] for i in group])
        batch = torch.nn.functional.pad(batch, (0, width_extra))  # padding beyond the longest changes nothing
        with torch.inference_mode():
            pooled = run.model.embed(batch, lens)
            expected = run.model.classify(pooled)
        logits, embedding = onnx_model.logits_and_embedding(batch, lens)
        assert logits.shape == expected.shape
        assert (logits - expected).abs().max().item() < DEFAULT_TOLERANCE, (group, lens)
        assert torch.allclose(embedding, pooled, atol=1e-3, rtol=1e-4)
        assert (onnx_model.classify(pooled) - expected).abs().max().item() < DEFAULT_TOLERANCE
        assert (onnx_model(batch, lens) - expected).abs().max().item() < DEFAULT_TOLERANCE


def test_whisper_export_matches_pytorch_at_three_lengths_alone_and_padded(whisper_export):
    run_dir, result = whisper_export
    assert result.within_tolerance and result.max_abs_logit_diff < DEFAULT_TOLERANCE
    assert result.exporter == "dynamo" and result.opset == 18
    assert result.path.is_file() and result.head_path.is_file() and result.sidecar_path.is_file()
    assert_matches(run_dir, result.path, LENGTHS)
    assert_matches(run_dir, result.path, LENGTHS, batch_sizes=(3,), width_extra=1234)
    assert_matches(run_dir, result.path, (100, 159, 161), batch_sizes=(3,))  # under one hop, one frame

    sidecar = read_sidecar(result.path)
    assert sidecar["labels"] == LABELS and sidecar["sample_rate"] == 16000
    assert sidecar["front_end"]["kind"] == "whisper_log_mel" and sidecar["front_end"]["in_graph"]
    assert sidecar["tolerance"] == DEFAULT_TOLERANCE and sidecar["opset"] == result.opset
    assert len(sidecar["reference_mean"]) == 64 and sidecar["recipe"]["member"] == "s1"
    assert sidecar["validation"]["checks"][-1]["batch"] == 3


def test_the_graph_has_dynamic_batch_and_length(whisper_export):
    import onnx

    _, result = whisper_export
    graph = onnx.load(str(result.path)).graph
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert all(isinstance(d, str) for d in dims["waveforms"]) and isinstance(dims["lengths"][0], str)
    assert dims["waveforms"][0] == dims["lengths"][0]


def test_long_input_is_refused_as_pytorch_does_and_cropped_in_the_graph(whisper_export):
    run_dir, result = whisper_export
    model = load_onnx_model(result.path)
    too_long = torch.zeros(1, 30 * 16000 + 160)
    with pytest.raises(ValueError, match="30 s window"):
        model(too_long, torch.tensor([too_long.shape[1]]))
    # long_input: crop is done inside the graph; the traced form crops as the model does
    run = load_run(run_dir)
    run.model.config.long_input = "crop"
    batch, lens = pad_batch(waves_at([30 * 16000 + 2_345, 8_000]))
    with torch.inference_mode():
        expected = run.model(batch, lens)
        logits, _ = s1_graph(run.model).eval()(batch, lens)
    assert (logits - expected).abs().max().item() < DEFAULT_TOLERANCE


def test_prediction_through_the_onnx_file_matches_the_run_folder(whisper_export, tmp_path):
    run_dir, result = whisper_export
    utterances = []
    for i, wave in enumerate(waves_at([6_000, 11_000, 17_000, 23_000, 9_000, 31_000], seed=5)):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, wave, 16000)
        utterances.append(Utterance(id=f"u{i}", audio=str(path), speaker="A" if i < 3 else "B"))
    assert is_onnx_model(result.path) and not is_onnx_model(run_dir)
    onnx_run = load_onnx_run(result.path)
    torch_run = load_run(run_dir)
    assert list(onnx_run.label_set) == LABELS and onnx_run.recipe.member == "s1"
    assert torch.equal(onnx_run.reference_mean, torch_run.reference_mean)
    for speaker_norm in (False, True):
        options = dict(batch_size=4, progress=False, report=lambda _: None, speaker_norm=speaker_norm)
        expected = predict_utterances(torch_run, utterances, **options)
        got = predict_utterances(onnx_run, utterances, **options)
        assert got.ids == expected.ids
        np.testing.assert_allclose(got.probs, expected.probs, atol=1e-4)


def test_the_service_runs_the_onnx_file(whisper_export):
    predictor = pytest.importorskip("abhinaya.serve.predictor")
    from abhinaya.serve.upload import Clip

    run_dir, result = whisper_export
    items = [
        predictor.ServeItem(id=f"c{i}", clip=Clip(f"c{i}.wav", wave, 16000), speaker="s", group="r1:s")
        for i, wave in enumerate(waves_at([7_000, 15_000, 21_000], seed=9))
    ]
    expected = predictor.MemberModel("s1", load_run(run_dir)).predict(items)[0]
    got = predictor.MemberModel("s1", load_onnx_run(result.path)).predict(items)[0]
    assert got.ids == expected.ids
    np.testing.assert_allclose(got.probs, expected.probs, atol=1e-4)


def test_a_run_that_is_not_s1_is_refused(tmp_path):
    run = tmp_path / "t1-run"
    run.mkdir()
    (run / "config.yaml").write_text("member: t1\n")
    LabelSet(LABELS).save(run / LABELS_FILE)
    with pytest.raises(OnnxExportError, match="supports member s1.*'t1'"):
        export_onnx(run, tmp_path / "t1.onnx")
    assert not (tmp_path / "t1.onnx").exists()


def test_wavlm_export_matches_and_a_tolerance_it_misses_writes_nothing(tmp_path, tiny_wavlm_dir):
    run = make_s1_run(tmp_path / "run", tiny_wavlm_dir)
    with pytest.raises(OnnxExportError, match="over the tolerance"):
        export_onnx(run, tmp_path / "strict.onnx", tolerance=1e-12, check_lengths=WAVLM_LENGTHS,
                    report=lambda _: None)
    assert not list(tmp_path.glob("strict*"))
    result = export_onnx(run, tmp_path / "wavlm.onnx", check_lengths=WAVLM_LENGTHS, report=lambda _: None)
    assert result.exporter == "torchscript" and result.within_tolerance
    assert read_sidecar(result.path)["front_end"]["kind"] == "waveform"
    assert_matches(run, result.path, WAVLM_LENGTHS)


def test_cli_export(whisper_export, tmp_path, capsys):
    run_dir, _ = whisper_export
    audio = tmp_path / "clip.wav"
    sf.write(audio, synthetic_utterance(12_345, seed=3), 16000)
    out = tmp_path / "cli" / "model.onnx"
    assert main(["export", "onnx", str(run_dir), "-o", str(out), "--check-audio", str(audio),
                 "--exporter", "torchscript"]) == 0
    printed = capsys.readouterr().out
    assert "max |logit diff|" in printed and "tolerance 0.001" in printed and "torchscript" in printed
    assert_matches(run_dir, out, LENGTHS, batch_sizes=(3,))
    sidecar = json.loads((tmp_path / "cli" / "model.onnx.json").read_text())
    assert (tmp_path / "cli" / "model.head.onnx").is_file()
    assert "clip.wav" in sum((c["utterances"] for c in sidecar["validation"]["checks"]), [])

    not_s1 = tmp_path / "not-s1"
    not_s1.mkdir()
    (not_s1 / "config.yaml").write_text("member: t1\n")
    LabelSet(LABELS).save(not_s1 / LABELS_FILE)
    assert main(["export", "onnx", str(not_s1), "-o", str(tmp_path / "x.onnx")]) == 1
    assert "supports member s1" in capsys.readouterr().err


def test_abhinaya_predict_takes_the_onnx_file_in_place_of_the_run_folder(whisper_export, tmp_path):
    from abhinaya.cli import main
    from abhinaya.predictions import read_predictions

    run_dir, result = whisper_export
    for i, wave in enumerate(waves_at([6_000, 12_000, 20_000], seed=7)):
        sf.write(tmp_path / f"u{i}.wav", wave, 16000)
    tables = {}
    for name, model in (("torch", run_dir), ("onnx", result.path)):
        out = tmp_path / f"{name}.csv"
        assert main(["predict", str(model), str(tmp_path), "-o", str(out), "--no-progress"]) == 0
        tables[name] = read_predictions(out)
    assert tables["onnx"].ids == tables["torch"].ids and tables["onnx"].labels == tables["torch"].labels
    np.testing.assert_allclose(tables["onnx"].probs, tables["torch"].probs, atol=1e-4)


def test_abhinaya_serve_loads_the_onnx_file(whisper_export):
    predictor = pytest.importorskip("abhinaya.serve.predictor")

    _, result = whisper_export
    service = predictor.load_service(result.path, report=lambda _: None)
    assert service.kind == "member" and service.labels == LABELS
