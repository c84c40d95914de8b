"""Every export's README.md: Hub YAML front matter, and a body that is the run's (corpora, recipe, label order,
evaluations with intervals); --push-to-hub's request at huggingface_hub's API boundary, and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from converters import flax_to_torch, model_card
from exhubert_jax import adapters, save_pretrained
from exhubert_jax.evaluation.output_folders import record
from exhubert_jax.model.config import EMOTION_CLASSES, preset
from exhubert_jax.model.hubert import init_params

CORPORA = {"demo-a": "hash-a", "emodb": "hash-b"}


def front_matter(path: Path) -> tuple[dict, str]:
    """(the card's YAML front matter, its body)."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    _, meta, body = text.split("---\n", 2)
    return yaml.safe_load(meta), body


@pytest.fixture
def run_folder(tmp_path) -> Path:
    """A training run's folder: best/ (a tiny model of the six classes), its run.json (started from a Hub id), and
    an evaluation of best/ in its eval/ index."""
    run = tmp_path / "run"
    config = preset("tiny", layerdrop=0.0, label_names=EMOTION_CLASSES)
    save_pretrained(run / "best", config, init_params(config, 0))
    (run / "run.json").write_text(json.dumps({
        "stage": "transfer", "init": "org/base-model", "corpora": CORPORA, "task": "categorical", "freeze": "original",
        "options": {"steps": 123, "batch_size": 4, "lr": 2e-5, "input_mode": "masked", "schedule": "linear"},
        "trainable_params": 4242}))
    folder = run / "best" / "eval" / "demo-a+emodb-test-masked-emotion"
    folder.mkdir(parents=True)
    folder.joinpath("results.json").write_text(json.dumps({
        "average_intervals": {"uar": [0.612, 0.8194], "wa": [0.6, 0.8], "macro_f1": None, "kappa": [0.5, 0.7]},
        "results": [{"corpus": c, "split": "test", "input": "masked", "label_space": "emotion", "n": 18, "uar": 0.7,
                     "intervals": {"uar": [0.6, 0.8]}} for c in CORPORA]}))
    record(run / "best" / "eval", {"corpora": list(CORPORA), "split": "test", "input": "masked", "labels": "emotion",
                                   "checkpoint": str(run / "best"), "mean_uar": 0.7222,
                                   "means": {"uar": 0.7222, "wa": 0.7, "macro_f1": 0.69, "kappa": 0.6},
                                   "path": folder.name, "main": "results.md", "files": ["results.json"]})
    return run


def test_the_card_is_the_runs(run_folder, tmp_path):
    assert flax_to_torch.main([str(run_folder), str(tmp_path / "out"), "--license", "cc-by-nc-sa-4.0"]) == 0
    meta, body = front_matter(tmp_path / "out" / "README.md")
    assert meta["pipeline_tag"] == "audio-classification" and meta["library_name"] == "transformers"
    assert meta["license"] == "cc-by-nc-sa-4.0" and meta["base_model"] == "org/base-model"
    assert {"audio-classification", "speech-emotion-recognition", "exhubert-jax"} <= set(meta["tags"])
    rows = [line for line in body.splitlines() if line.startswith("| ") and line.split("|")[2].strip()
            in EMOTION_CLASSES]
    assert [row.split("|")[2].strip() for row in rows] == list(EMOTION_CLASSES)  # the head's order
    assert rows[0].split("|")[3:5] == [" low ", " negative "] and rows[5].split("|")[3:5] == [" high ", " positive "]
    assert "`demo-a`, `emodb`" in body and "| steps | 123 |" in body and "org/base-model" in body
    assert "72.2 (61.2–81.9)" in body and "↳ emodb" in body  # the index's mean with the interval, each corpus
    assert "Protocol `masked`" in body and str(tmp_path / "out") in body


def test_a_card_without_a_run_or_license_and_the_peft_card(tmp_path):
    config = preset("tiny", layerdrop=0.0)
    params, config, _ = adapters.apply_spec(init_params(config, 0), config, "lora:r=2,targets=q+v")
    save_pretrained(tmp_path / "ckpt", config, params)
    assert flax_to_torch.main([str(tmp_path / "ckpt"), str(tmp_path / "peft"), "--peft", "--input", "card"]) == 0
    meta, body = front_matter(tmp_path / "peft" / "README.md")
    assert meta["library_name"] == "peft" and "license" not in meta and "base_model" not in meta
    assert "PeftModel.from_pretrained" in body and "Not recorded" in body and "Protocol `card`" in body
    assert front_matter(tmp_path / "peft" / "base" / "README.md")[0]["library_name"] == "transformers"


def test_released_and_onnx_cards_name_their_kind():
    config = preset("tiny", layerdrop=0.0, expansion_copies=1, expansion_style="gated", label_names=EMOTION_CLASSES)
    released = model_card.text(model_card.Card("released", config, "card", "org/exhubert-out"))
    meta = yaml.safe_load(released.split("---\n")[1])
    assert "exhubert" in meta["tags"] and "exhubert-released-layout" in meta["tags"]
    assert 'exhubert_jax.from_pretrained("org/exhubert-out")' in released
    onnx = model_card.text(model_card.Card("onnx", config, "masked", "m.onnx", onnx_inputs=("input_values",),
                                           file="m.onnx"))
    assert yaml.safe_load(onnx.split("---\n")[1])["library_name"] == "onnx" and '"attention_mask"' not in onnx


@pytest.fixture
def online(monkeypatch):
    """HF_HUB_OFFLINE unset, and HfApi's requests recorded instead of sent: [(method, args, kwargs, files)]."""
    from huggingface_hub import HfApi, constants

    calls = []

    def recorder(name):
        def call(self, *args, **kwargs):
            folder = kwargs.get("folder_path")
            files = sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file()) if folder \
                else None
            calls.append((name, args, kwargs, files))
            return type("CommitInfo", (), {"commit_url": "https://huggingface.co/org/name/commit/abc"})()
        return call

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for name in ("create_repo", "create_branch", "upload_folder"):
        monkeypatch.setattr(HfApi, name, recorder(name))
    return calls


def test_push_to_hub_uploads_the_verified_export(run_folder, tmp_path, online, capsys):
    out = tmp_path / "out"
    assert flax_to_torch.main([str(run_folder), str(out), "--push-to-hub", "org/name", "--private", "--revision", "dev",
                               "--commit-message", "first export"]) == 0
    assert [c[0] for c in online] == ["create_repo", "create_branch", "upload_folder"]
    assert online[0][1] == ("org/name",) and online[0][2] == {"private": True, "exist_ok": True}
    assert online[1][1] == ("org/name",) and online[1][2] == {"branch": "dev", "exist_ok": True}
    upload = online[2][2]
    assert upload["repo_id"] == "org/name" and upload["folder_path"] == str(out) and upload["revision"] == "dev"
    assert upload["commit_message"] == "first export" and upload["allow_patterns"] is None
    assert {"README.md", "config.json", "model.safetensors", "preprocessor_config.json"} <= set(online[2][3])
    captured = capsys.readouterr()
    assert "https://huggingface.co/org/name/commit/abc" in captured.err
    assert json.loads(captured.out.strip().splitlines()[-1])["url"].endswith("/commit/abc")
    assert 'model="org/name"' in (out / "README.md").read_text()  # the card loads it from where it went


@pytest.mark.parametrize("argv, message", [
    (["--push-to-hub", "org/name"], "HF_HUB_OFFLINE is set"),
    (["--private"], "--private applies with --push-to-hub ORG/NAME only"),
    (["--push-to-hub", "org/name@dev"], "--push-to-hub must be a Hub repo id ORG/NAME"),
])
def test_push_refusals_come_before_any_work(run_folder, tmp_path, monkeypatch, capsys, argv, message):
    from huggingface_hub import constants

    import converters.flax_to_torch as command

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(command, "from_pretrained", lambda *a, **k: pytest.fail("a model was loaded"))
    assert flax_to_torch.main([str(run_folder), str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_an_export_that_does_not_read_back_is_never_pushed(run_folder, tmp_path, online, monkeypatch, capsys):
    import converters.flax_to_torch as command

    def broken(out):
        from converters.export import ExportCheckError
        raise ExportCheckError(f"{out}/model.safetensors: the export does not read back")

    monkeypatch.setattr(command, "verify", broken)
    assert flax_to_torch.main([str(run_folder), str(tmp_path / "out"), "--push-to-hub", "org/name"]) == 2
    assert not online and "does not read back" in capsys.readouterr().err


def test_verify_reads_the_written_weights_back(run_folder, tmp_path):
    from converters.export import ExportCheckError, verify

    assert flax_to_torch.main([str(run_folder), str(tmp_path / "out")]) == 0
    assert verify(tmp_path / "out") > 0
    weights = tmp_path / "out" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])  # truncated
    with pytest.raises(ExportCheckError, match="model.safetensors"):
        verify(tmp_path / "out")


def test_an_onnx_push_is_refused_offline_before_any_work(run_folder, tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    from converters import to_onnx

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(to_onnx, "from_pretrained", lambda *a, **k: pytest.fail("a model was loaded"))
    assert to_onnx.main([str(run_folder), str(tmp_path / "m.onnx"), "--push-to-hub", "org/name"]) == 2
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err and not (tmp_path / "m.onnx").exists()


def test_a_single_file_export_is_staged_as_a_folder_of_its_own(tmp_path):
    from converters.hub_push import staged

    (tmp_path / "m.onnx").write_bytes(b"graph")
    (tmp_path / "m.onnx.README.md").write_text("card")
    (tmp_path / "README.md").write_text("someone else's")
    with staged({"m.onnx": tmp_path / "m.onnx", "README.md": tmp_path / "m.onnx.README.md"}) as folder:
        assert sorted(p.name for p in folder.iterdir()) == ["README.md", "m.onnx"]
        assert (folder / "README.md").read_text() == "card"
    assert not folder.exists() and (tmp_path / "README.md").read_text() == "someone else's"


@pytest.mark.slow
def test_an_onnx_export_pushes_its_file_and_card(run_folder, tmp_path, online, capsys):
    from converters import to_onnx

    (tmp_path / "README.md").write_text("not a card")  # left alone: the card goes to m.onnx.README.md
    assert to_onnx.main([str(run_folder), str(tmp_path / "m.onnx"), "--no-verify", "--push-to-hub", "org/onnx"]) == 0
    assert (tmp_path / "README.md").read_text() == "not a card" and (tmp_path / "m.onnx.README.md").is_file()
    assert [c[0] for c in online] == ["create_repo", "upload_folder"] and online[1][3] == ["README.md", "m.onnx"]
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["url"].endswith("/commit/abc")


def test_a_refused_upload_is_one_line_and_keeps_the_export(run_folder, tmp_path, online, monkeypatch, capsys):
    from types import SimpleNamespace

    from huggingface_hub import HfApi, errors

    def refuse(self, **kwargs):
        raise errors.HfHubHTTPError("403 Forbidden: no write access", response=SimpleNamespace(headers={},
                                                                                              request=None))

    monkeypatch.setattr(HfApi, "upload_folder", refuse)
    assert flax_to_torch.main([str(run_folder), str(tmp_path / "out"), "--push-to-hub", "org/name"]) == 2
    errors_shown = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors_shown) == 1 and "the upload failed (HfHubHTTPError: 403 Forbidden" in errors_shown[0]
    assert "the export in" in errors_shown[0] and (tmp_path / "out" / "model.safetensors").is_file()
