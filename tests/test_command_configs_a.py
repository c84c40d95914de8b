"""--config FILE (YAML or JSON) of the protocol runner, embed, the adapters table and the expansion count CLI: shown in
--help, sets the options (required ones included), a flag on the command line wins, an unknown key is one line
naming the nearest key (exit 2, no traceback). Fast: nothing is trained or read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from exhubert_jax.adapters import __main__ as adapters_cli
from exhubert_jax.inference import embedding_files as embed
from exhubert_jax.model import expansion
from exhubert_jax.protocols import runner as protocol

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, values: dict) -> str:
    """The values as YAML (.yaml) or JSON (anything else); returns the path as a string."""
    if path.suffix == ".yaml":
        import yaml

        path.write_text(yaml.safe_dump(values))
    else:
        path.write_text(json.dumps(values))
    return str(path)


def help_of(parse, argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        parse(argv)
    assert e.value.code == 0
    return capsys.readouterr().out


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]
    return err[0]


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("parse, argv", [
    (protocol.parse_args, ["folds", "--help"]), (protocol.parse_args, ["loco", "--help"]),
    (embed.parse_args, ["--help"]), (adapters_cli.parse_args, ["--help"]), (expansion.parse_args, ["--help"]),
])
def test_help_shows_config(parse, argv, capsys):
    out = help_of(parse, argv, capsys)
    assert "--config FILE" in out


def test_help_keeps_the_flags(capsys):
    folds = help_of(protocol.parse_args, ["folds", "--help"], capsys)
    assert "--folds FOLDS --workdir" in " ".join(folds.split())  # still required, in the usage line
    embed_help = " ".join(help_of(embed.parse_args, ["--help"], capsys).split())
    assert "(--corpus CORPUS | --audio AUDIO)" in embed_help and "--out OUT" in embed_help
    assert "[--out OUT]" not in embed_help
    table = " ".join(help_of(adapters_cli.parse_args, ["--help"], capsys).split())
    assert "usage: python -m exhubert_jax.adapters" in table and "[--adapter" not in table
    count = help_of(expansion.parse_args, ["--help"], capsys)
    assert "usage: python -m exhubert_jax.expansion" in count and "{zll,zero_out,gated}" in count


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_protocol_config_sets_the_modes_options(tmp_path, suffix):
    loco = write(tmp_path / f"loco{suffix}", {"corpora": "a,b", "leave-out": "b", "transfer_steps": 3,
                                              "workdir": "w", "eval_batch_size": 2})
    args, train_argv = protocol.parse_args(["loco", "--config", loco, "--", "--steps", "2"])
    assert (args.mode, args.corpora, args.leave_out, args.transfer_steps, args.workdir, args.eval_batch_size) == (
        "loco", "a,b", "b", 3, "w", 2)
    assert train_argv == ["--steps", "2"]  # still passed to train.py unchanged
    folds = write(tmp_path / f"folds{suffix}", {"folds": "emodb", "workdir": "w", "data_dir": "d"})
    args, _ = protocol.parse_args(["folds", "--config", folds])
    assert (args.mode, args.folds, args.workdir, args.data_dir, args.eval_batch_size) == ("folds", "emodb", "w", "d", 8)


def test_protocol_flags_win_and_keys_belong_to_the_mode(tmp_path, capsys):
    cfg = write(tmp_path / "c.yaml", {"corpora": "a,b", "workdir": "w", "eval_batch_size": 2})
    args, _ = protocol.parse_args(["loco", "--config", cfg, "--workdir", "v", "--eval-batch-size", "5"])
    assert (args.corpora, args.workdir, args.eval_batch_size) == ("a,b", "v", 5)
    # a loco key in a folds run is refused, naming the folds keys
    assert protocol.main(["folds", "--config", cfg]) == 2
    assert "unknown key 'corpora'" in one_error_line(capsys)
    with pytest.raises(SystemExit):  # the required flags are still required without the file
        protocol.parse_args(["loco", "--workdir", "w"])
    assert "required: --corpora" in capsys.readouterr().err


def test_protocol_typo_key_is_one_line_exit_2(tmp_path):
    cfg = write(tmp_path / "c.yaml", {"corpora": "a,b", "workdir": "w", "eval_batch_sise": 4})
    env = {**os.environ, "EXHUBERT_NO_HUGEPAGES": "1", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "exhubert_jax.protocol", "loco", "--config", cfg], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr
    assert err[0].startswith("error: ") and "'eval_batch_sise'" in err[0] and "eval_batch_size" in err[0]


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_embed_config_sets_options(tmp_path, suffix):
    cfg = write(tmp_path / f"e{suffix}", {"corpus": "demo-a", "out": "emb", "layer": "3", "level": "frame",
                                          "batch-size": 2, "chunk_seconds": 1.5, "split": "all"})
    args = embed.parse_args(["--config", cfg])
    assert (args.corpus, args.audio, args.out, args.layer, args.level, args.batch_size, args.chunk_seconds,
            args.split) == ("demo-a", None, "emb", "3", "frame", 2, 1.5, "all")


def test_embed_flags_win(tmp_path, capsys):
    cfg = write(tmp_path / "e.yaml", {"corpus": "demo-a", "out": "emb", "batch_size": 2})
    args = embed.parse_args(["--config", cfg, "--batch-size", "6", "--out", "x"])
    assert (args.batch_size, args.out, args.corpus) == (6, "x", "demo-a")
    args = embed.parse_args(["--config", cfg, "--audio", "clips"])  # --audio on the command line beats the file's
    assert (args.audio, args.corpus) == ("clips", None)
    both = write(tmp_path / "both.yaml", {"corpus": "demo-a", "audio": "clips", "out": "emb"})
    assert embed.main(["--config", both]) == 2
    assert "sets both corpus and audio" in one_error_line(capsys)
    with pytest.raises(SystemExit):  # still required without the file
        embed.parse_args(["--corpus", "demo-a"])
    assert "required: --out" in capsys.readouterr().err


def test_embed_typo_and_bad_value(tmp_path, capsys):
    assert embed.main(["--config", write(tmp_path / "t.yaml", {"corpus": "a", "out": "o", "batch_sise": 4})]) == 2
    line = one_error_line(capsys)
    assert "unknown key 'batch_sise'" in line and "batch_size" in line
    assert embed.main(["--config", write(tmp_path / "v.json", {"corpus": "a", "out": "o", "level": "word"})]) == 2
    assert "--level must be one of utterance, frame" in one_error_line(capsys)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_adapters_table_from_config(tmp_path, suffix, capsys):
    cfg = write(tmp_path / f"a{suffix}", {"preset": "tiny", "adapter": ["lora:r=2", "ia3"]})
    assert adapters_cli.main(["--config", cfg]) == 0
    out = capsys.readouterr().out
    assert out.startswith("adapters: lora:r=2") and "ia3" in out.splitlines()[0]
    args = adapters_cli.parse_args(["--config", write(tmp_path / f"one{suffix}", {"adapter": "bitfit"})])
    assert args.adapter == ["bitfit"] and args.preset == "large"  # a single spec is a list of one


def test_adapters_flag_wins_and_typo(tmp_path, capsys):
    cfg = write(tmp_path / "a.yaml", {"preset": "large", "adapter": ["bitfit"]})
    assert adapters_cli.main(["--config", cfg, "--preset", "tiny"]) == 0
    tiny = last_json(capsys)
    assert adapters_cli.main(["--preset", "tiny", "--adapter", "bitfit"]) == 0
    assert last_json(capsys) == tiny
    assert adapters_cli.main(["--config", write(tmp_path / "t.yaml", {"adapters": ["bitfit"]})]) == 2
    line = one_error_line(capsys)
    assert "unknown key 'adapters'" in line and "adapter" in line


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_expansion_count_from_config(tmp_path, suffix, capsys):
    cfg = write(tmp_path / f"x{suffix}", {"preset": "tiny", "copies": 1, "style": "zero_out", "freeze": "none"})
    assert expansion.main(["--config", cfg]) == 0
    from_file = last_json(capsys)
    assert expansion.main(["--preset", "tiny", "--copies", "1", "--style", "zero_out", "--freeze", "none"]) == 0
    assert last_json(capsys) == from_file


def test_expansion_flag_wins_and_typo(tmp_path, capsys):
    cfg = write(tmp_path / "x.yaml", {"preset": "tiny", "copies": 2})
    assert expansion.main(["--config", cfg, "--copies", "0"]) == 0
    from_file = last_json(capsys)
    assert expansion.main(["--preset", "tiny"]) == 0
    assert last_json(capsys) == from_file
    assert expansion.main(["--config", write(tmp_path / "t.yaml", {"preset": "tiny", "copiess": 1})]) == 2
    line = one_error_line(capsys)
    assert "unknown key 'copiess'" in line and "copies" in line
    assert expansion.main(["--config", write(tmp_path / "n.json", {"copies": -1})]) == 2
    assert "--copies must not be negative" in one_error_line(capsys)
