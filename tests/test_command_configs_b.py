"""--config FILE for the data and converter commands: --help shows it, YAML and JSON files set options (and the
positional SRC OUT), a flag on the command line wins over the file, and an unknown key is one `error:` line naming
the nearest key (exit 2). torch_to_flax's --config keeps its first meaning too: the model's HF config.json or a
preset name."""

from __future__ import annotations

import json

import pytest

from converters import flax_to_torch, to_onnx, torch_to_flax
from exhubert_jax.data.demo import recording, synthetic
from exhubert_jax.data.prepare import command as prepare

# name -> the command's module: its main(argv), and parse_args(argv) giving the parsed namespace.
COMMANDS = {
    "prepare": prepare, "synthetic": synthetic, "recording": recording,
    "torch_to_flax": torch_to_flax, "flax_to_torch": flax_to_torch, "to_onnx": to_onnx,
}
POSITIONALS = ["SRC", "OUT"]
# name -> (what the command line needs besides the file, the file's values, the namespace they give)
SETS = {
    "prepare": ([], {"corpus": "emodb", "seed": 3, "on-error": "stop", "no_progress": True, "workers": 2},
                dict(corpus="emodb", seed=3, on_error="stop", no_progress=True, workers=2)),
    "synthetic": ([], {"out": "demo", "n_per_class": 2, "n-speakers": 5, "prepare": "data"},
                  dict(out="demo", n_per_class=2, n_speakers=5, prepare="data")),
    "recording": (["x.wav"], {"minutes": 0.5, "seed": 7}, dict(out="x.wav", minutes=0.5, seed=7)),
    "torch_to_flax": (POSITIONALS, {"num_labels": 4, "seed": 2, "peft": "adapter"},
                      dict(src="SRC", out="OUT", num_labels=4, seed=2, peft="adapter", config=None)),
    "flax_to_torch": (POSITIONALS, {"layout": "released", "input": "card", "merge": True},
                      dict(src="SRC", out="OUT", layout="released", input="card", merge=True, peft=False)),
    "to_onnx": (POSITIONALS, {"opset": 17, "no-mask": True, "embedding": True},
                dict(src="SRC", out="OUT", opset=17, no_mask=True, embedding=True, no_verify=False)),
}
# name -> (a flag that overrides the file's value, the attribute, what the flag gives)
OVERRIDES = {
    "prepare": (["--seed", "9"], "seed", 9),
    "synthetic": (["--n-per-class", "1"], "n_per_class", 1),
    "recording": (["--seed", "1"], "seed", 1),
    "torch_to_flax": (["--num-labels", "8"], "num_labels", 8),
    "flax_to_torch": (["--layout", "ours"], "layout", "ours"),
    "to_onnx": (["--opset", "16"], "opset", 16),
}
# name -> (a misspelt key, the key the error names)
TYPOS = {
    "prepare": ("worker", "workers"), "synthetic": ("n_per_clas", "n_per_class"), "recording": ("minute", "minutes"),
    "torch_to_flax": ("num_lables", "num_labels"), "flax_to_torch": ("layuot", "layout"), "to_onnx": ("opsett", "opset"),
}


def write(path, values: dict):
    """A YAML (.yaml) or JSON (.json) config file of the values."""
    if path.suffix == ".json":
        path.write_text(json.dumps(values))
    else:
        import yaml

        path.write_text(yaml.safe_dump(values))
    return str(path)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_shows_config(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        COMMANDS[name].parse_args(["--help"])
    assert exit_info.value.code == 0 and "--config" in capsys.readouterr().out


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
@pytest.mark.parametrize("name", COMMANDS)
def test_config_file_sets_options(name, suffix, tmp_path):
    argv, values, want = SETS[name]
    args = COMMANDS[name].parse_args([*argv, "--config", write(tmp_path / f"options{suffix}", values)])
    assert {k: getattr(args, k) for k in want} == want


@pytest.mark.parametrize("name", COMMANDS)
def test_flag_wins_over_the_file(name, tmp_path):
    argv, values, want = SETS[name]
    flag, attribute, value = OVERRIDES[name]
    args = COMMANDS[name].parse_args([*argv, "--config", write(tmp_path / "o.yaml", values), *flag])
    assert getattr(args, attribute) == value
    assert all(getattr(args, k) == v for k, v in want.items() if k != attribute)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
@pytest.mark.parametrize("name", COMMANDS)
def test_unknown_key_is_one_line_naming_the_nearest(name, suffix, tmp_path, capsys):
    argv, _, _ = SETS[name]
    typo, near = TYPOS[name]
    assert COMMANDS[name].main([*argv, "--config", write(tmp_path / f"bad{suffix}", {typo: 1})]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and f"did you mean {near}" in err
    assert "Traceback" not in err


def test_prepare_runs_from_a_config_file(tmp_path, capsys):
    assert prepare.main(["--config", write(tmp_path / "o.json", {"list": True})]) == 0
    assert "emodb" in capsys.readouterr().out


def test_synthetic_out_is_required_from_the_file_or_the_flag(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        synthetic.parse_args(["--config", write(tmp_path / "o.yaml", {"seed": 1})])
    assert exit_info.value.code == 2 and "the following arguments are required: --out" in capsys.readouterr().err
    assert synthetic.parse_args(["--config", write(tmp_path / "o.yaml", {"out": "a"}), "--out", "b"]).out == "b"


def test_recording_runs_from_a_config_file(tmp_path, capsys):
    out = tmp_path / "rec.wav"
    assert recording.main(["--config", write(tmp_path / "o.yaml", {"out": str(out), "minutes": 0.01})]) == 0
    assert out.exists() and out.with_suffix(".csv").exists()


@pytest.mark.parametrize("name", ["torch_to_flax", "flax_to_torch", "to_onnx", "recording"])
def test_positionals_come_from_the_file_or_the_command_line(name, tmp_path, capsys):
    parse_args = COMMANDS[name].parse_args
    keys = ["out"] if name == "recording" else ["src", "out"]
    config = write(tmp_path / "o.yaml", {k: f"file-{k}" for k in keys})
    assert [getattr(parse_args(["--config", config]), k) for k in keys] == [f"file-{k}" for k in keys]
    given = [f"cli-{k}" for k in keys]
    assert [getattr(parse_args([*given, "--config", config]), k) for k in keys] == given
    with pytest.raises(SystemExit) as exit_info:
        parse_args([])
    assert exit_info.value.code == 2
    assert f"the following arguments are required: {', '.join(keys)}" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["torch_to_flax", "flax_to_torch", "to_onnx"])
def test_flags_between_src_and_out(name):
    flag, attribute, value = OVERRIDES[name]
    args = COMMANDS[name].parse_args(["SRC", *flag, "OUT"])
    assert (args.src, args.out, getattr(args, attribute)) == ("SRC", "OUT", value)


@pytest.mark.parametrize("argv,file", [
    (["--peft", "--merge"], None),
    (["--merge"], {"peft": True}),
    ([], {"peft": True, "merge": True}),
])
def test_flax_to_torch_peft_and_merge_exclude_each_other(argv, file, tmp_path, capsys):
    config = ["--config", write(tmp_path / "o.yaml", file)] if file else []
    with pytest.raises(SystemExit) as exit_info:
        flax_to_torch.parse_args([*POSITIONALS, *config, *argv])
    assert exit_info.value.code == 2 and "not allowed with argument --peft" in capsys.readouterr().err


def test_torch_to_flax_config_is_still_the_model_config_or_a_preset(tmp_path):
    hf = tmp_path / "config.json"
    hf.write_text(json.dumps({"model_type": "hubert", "hidden_size": 32, "num_labels": 6}))
    assert torch_to_flax.parse_args([*POSITIONALS, "--config", "large"]).config == "large"
    assert torch_to_flax.parse_args([*POSITIONALS, "--config", str(hf)]).config == str(hf)
    partial = tmp_path / "partial.json"  # an HF config without model_type is still one
    partial.write_text(json.dumps({"hidden_size": 32}))
    assert torch_to_flax.parse_args([*POSITIONALS, "--config", str(partial)]).config == str(partial)
    options = write(tmp_path / "o.yaml", {"seed": 5, "config": "base"})
    args = torch_to_flax.parse_args([*POSITIONALS, "--config", options])
    assert (args.config, args.seed) == ("base", 5)
    args = torch_to_flax.parse_args([*POSITIONALS, "--config", options, "--config", "tiny"])  # both kinds at once
    assert (args.config, args.seed) == ("tiny", 5)
