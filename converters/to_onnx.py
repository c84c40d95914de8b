"""Export an exhubert-jax checkpoint (or a training workdir's best/final) to ONNX, through its PyTorch export.

Usage: python -m converters.to_onnx SRC OUT.onnx [--embedding] [--no-mask] [--opset 18] [--no-verify]
The graph takes input_values (batch, samples) float32 and attention_mask (batch, samples) int64, both axes
dynamic, and gives logits (batch, classes), plus the pooled embedding (batch, classifier_proj_size) with
--embedding. LoRA and IA3 adapters are merged first; models the PyTorch export cannot express are refused.
SRC may be a Hub id org/name[@revision]. A model card goes beside OUT as README.md (as OUT.README.md where a
README.md of something else is there); with --push-to-hub ORG/NAME the file, its .data and the card, once written
and verified, are uploaded there.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":  # Ctrl-C and user errors get their one line from here on (exhubert_jax.process.commands)
    from exhubert_jax.process.commands import run_command

    sys.exit(run_command("converters.to_onnx"))

import argparse
import contextlib
import dataclasses
import io
import json
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np

from exhubert_jax import adapters
from exhubert_jax.errors import ExhubertError, one_line
from exhubert_jax.hub.repos import resolve_checkpoint
from exhubert_jax.model.config import HubertConfig
from exhubert_jax.pretrained import from_pretrained, load_config
from exhubert_jax.process.atomic_files import atomic_files
from exhubert_jax.process.output_dirs import sized_output
from exhubert_jax.process.commands import USER_ERROR, command
from exhubert_jax.process.options import (add_flags, add_positionals, command_parser, option, parse,
                                          require_positionals)

from . import hub_push, model_card
from .export import export, trained_input_mode
from .onnx_io import EMBEDDING, INPUTS, LOGITS, jax_outputs, run, session

OPSET = 18
EXAMPLE_SAMPLES = 16000  # the traced example: 2 rows of 1 s, the second padded (the graph is generic in both axes)
VERIFY_TOLERANCE = 1e-3  # max-abs logit difference onnxruntime vs JAX above which the export is reported broken
ONE_FILE = 1536 * 1024 * 1024  # weights past this go to OUT.data (torch.onnx's own limit, below protobuf's 2 GB)


class OnnxExportError(ExhubertError, ValueError):
    """A model that cannot be exported to ONNX, or an export that does not reproduce the model."""


def check_exportable(config: HubertConfig) -> None:
    """Refuse (from the config alone, before any weight is read) adapters that neither merge nor export."""
    left = adapters.unmergeable(config)
    if left:
        raise OnnxExportError(f"adapter(s) {', '.join(left)} cannot be exported to ONNX: they do not fold into "
                              "HuBERT weights and the PyTorch model has no layers for them (lora, ia3 and bitfit "
                              "merge and export)")


def exportable(params: dict, config: HubertConfig) -> tuple[dict, HubertConfig, list[str]]:
    """(params, config, folded adapter specs) with mergeable adapters folded in; other adapters are refused."""
    check_exportable(config)
    if not config.adapters:
        return params, config, []
    return adapters.merge_all(params, config)


def min_samples(config: HubertConfig) -> int:
    """The shortest input that gives two frames (torch.export's frame axis is symbolic only from 2 up)."""
    field, jump = 1, 1
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        field += (kernel - 1) * jump
        jump *= stride
    return field + jump


def load_torch(params: dict, config: HubertConfig):
    """Our PyTorch export of the model, loaded back as a user loads it (ZLL models through their own code)."""
    from transformers import AutoModelForAudioClassification
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = export(params, config, tmp)
            model = AutoModelForAudioClassification.from_pretrained(out, trust_remote_code=True)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    return model.float().eval()


def graph_module(model, embedding: bool):
    """A torch module returning logits, or (logits, the classifier's input: the pooled embedding)."""
    import torch

    pooled = []  # filled by the hook during each forward (a module attribute would have to be a buffer for export)
    model.classifier.register_forward_pre_hook(lambda module, args: pooled.append(args[0]))

    class Graph(torch.nn.Module):
        """The exported computation."""

        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_values, attention_mask=None):
            logits = self.model(input_values, attention_mask=attention_mask).logits
            return (logits, pooled.pop()) if embedding else logits

    return Graph().eval()


def example_inputs(mask: bool) -> tuple:
    """The traced example: 2 rows of EXAMPLE_SAMPLES, the second with 40 % padding when there is a mask."""
    import torch

    x = torch.randn(2, EXAMPLE_SAMPLES, generator=torch.Generator().manual_seed(0))
    if not mask:
        return (x,)
    m = torch.ones(2, EXAMPLE_SAMPLES, dtype=torch.int64)
    m[1, int(0.6 * EXAMPLE_SAMPLES):] = 0
    return x * m, m


@contextlib.contextmanager
def quiet_exporter():
    """Keep torch.onnx's progress lines, warnings and log messages off the terminal."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "onnx_ir", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def trace(graph, config: HubertConfig, mask: bool, embedding: bool, opset: int):
    """torch.onnx's dynamo exporter on `graph` with dynamic batch and length axes: an ONNXProgram."""
    import torch

    names = list(INPUTS if mask else INPUTS[:1])
    batch, samples = torch.export.Dim("batch"), torch.export.Dim("samples", min=min_samples(config))
    try:
        with quiet_exporter(), torch.inference_mode(False), torch.no_grad():
            return torch.onnx.export(graph, example_inputs(mask), dynamo=True, opset_version=opset,
                                     input_names=names, output_names=[LOGITS, EMBEDDING] if embedding else [LOGITS],
                                     dynamic_shapes={n: {0: batch, 1: samples} for n in names}, verbose=False)
    except Exception as e:  # torch.export / translation failures: a construct the exporter cannot express
        raise OnnxExportError(f"torch.onnx cannot export this model ({one_line(e)})") from e


def data_file(out: Path) -> Path:
    """OUT.data: where the weights go past protobuf's 2 GB (the ONNX file names it relative to itself)."""
    return out.with_name(out.name + ".data")


def file_bytes(program) -> int:
    """The bytes an exported program's files take: its weights when they go to OUT.data (nearly all of it), else
    the size of the whole serialized model (a small model's graph outweighs its weights)."""
    from onnx_ir import serde

    weights = sum(v.const_value.nbytes for v in program.model.graph.initializers.values() if v.const_value is not None)
    return weights if weights > ONE_FILE else serde.serialize_model(program.model).ByteSize()


def save(program, out: Path) -> list[Path]:
    """Write the ONNX file (weights in OUT.data beside it past protobuf's 2 GB); returns the files written. A full
    disk is a DiskFullError naming `out` and the bytes the files need (counted only then)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with sized_output(out, lambda: file_bytes(program)):
        program.save(str(out))
    return [p for p in (out, data_file(out)) if p.exists()]


def check(out: Path, shown: Path | None = None) -> None:
    """ONNX's checker with shape inference on the written file (by path, so external data is fine); errors name
    `shown` (default `out`)."""
    import onnx

    try:
        onnx.checker.check_model(str(out), full_check=True)
    except Exception as e:  # onnx.checker.ValidationError, shape-inference errors
        raise OnnxExportError(f"{shown or out}: the ONNX checker rejects the exported file ({one_line(e)})") from e


def verify(out: Path, model, params: dict, mask: bool, shown: Path | None = None) -> float:
    """Max-abs logit difference, onnxruntime vs our JAX model, on a batch of a shape the export did not see; errors
    name `shown` (default `out`)."""
    samples = int(1.3 * EXAMPLE_SAMPLES) + 7
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, samples)).astype(np.float32)
    m = None
    if mask:
        m = np.ones((3, samples), np.int64)
        m[1, int(0.7 * samples):] = 0
        m[2, int(0.45 * samples):] = 0
        x = x * m
    want, _ = jax_outputs(model)(params, x, m)
    got = run(session(out), x, m)[LOGITS]
    diff = float(np.max(np.abs(got - np.asarray(want))))
    if not diff <= VERIFY_TOLERANCE:
        raise OnnxExportError(f"{shown or out}: onnxruntime logits differ from the JAX model's by {diff:.3g} "
                              f"(> {VERIFY_TOLERANCE}); the export is wrong, do not use it")
    return diff


def card_file(out: Path) -> Path:
    """Where an ONNX export's model card goes: README.md beside it, unless a README.md that no export wrote is
    there (then OUT.README.md, and that README.md is left alone)."""
    readme = out.with_name(model_card.CARD)
    return readme if not readme.exists() or model_card.is_ours(readme) else out.with_name(f"{out.name}.README.md")


def export_onnx(params: dict, config: HubertConfig, out: str | Path, *, embedding: bool = False, mask: bool = True,
                opset: int = OPSET, model=None, source: str | Path | None = None, input_mode: str = "masked",
                license: str | None = None, where: str | None = None) -> dict:
    """Export to `out` with its model card (card_file; `source`, the checkpoint, for its run; `license`; `where` the
    Hub repo it goes to) and run ONNX's checker, and with `model` (the JAX model of `params`) verify the file
    against it: a summary (files, sizes, inputs, outputs, merged adapters, the difference). The files are written
    and checked beside `out` and only then renamed onto it (a stale OUT.data removed), so a refused export, a full
    disk (one DiskFullError naming `out` and the bytes it needs) or Ctrl-C leaves an earlier export as it was."""
    out, original = Path(out), params
    params, config, folded = exportable(params, config)
    graph = graph_module(load_torch(params, config), embedding)
    program = trace(graph, config, mask, embedding, opset)
    del graph
    summary, card = {}, card_file(out)
    inputs = tuple(INPUTS if mask else INPUTS[:1])
    with atomic_files(out, data_file(out), card) as tmp:
        files = save(program, tmp / out.name)
        del program
        check(files[0], shown=out)
        if model is not None:
            summary["max_abs_logit_diff_vs_jax"] = verify(files[0], model, original, mask, shown=out)
        written = sum(f.stat().st_size for f in files)
        model_card.write(tmp, model_card.Card("onnx", config, input_mode, where or str(out),
                                              Path(source) if source else None, license, onnx_inputs=inputs,
                                              file=out.name), card.name)
    files.append(card)
    return {"out": str(out), "files": [str(out.with_name(f.name)) for f in files], "bytes": written,
            "inputs": list(INPUTS if mask else INPUTS[:1]), "outputs": [LOGITS, EMBEDDING] if embedding else [LOGITS],
            "opset": opset, "style": config.expansion_style or "plain", "layers": config.total_layers,
            "merged_adapters": folded, **summary}


@dataclasses.dataclass
class OnnxOptions:
    """The command's flags (a --config file's keys are these names, and those of Paths)."""

    embedding: bool = option(False, action="store_true", help="also output the pooled embedding the classifier reads")
    no_mask: bool = option(False, action="store_true", help="no attention_mask input (fixed-length, unpadded clips as "
                                                            "the model card feeds them)")
    opset: int = option(OPSET, type=int, help=f"ONNX opset (default {OPSET})")
    no_verify: bool = option(False, action="store_true", help="skip the onnxruntime-vs-JAX check on a fresh shape")


@dataclasses.dataclass
class Paths:
    """The positional arguments, which a --config file may give instead."""

    src: str | None = option(None, help="exhubert-jax checkpoint directory, a training workdir (uses best/, else "
                                        "final/), or a Hub id org/name[@revision]")
    out: str | None = option(None, help="the .onnx file to write (weights go to OUT.data beside it past 2 GB)")


def build_parser() -> argparse.ArgumentParser:
    """SRC OUT, --config FILE and the declared flags."""
    ap = command_parser(__doc__.splitlines()[0])
    add_positionals(ap, Paths)
    add_flags(ap, OnnxOptions)
    add_flags(ap, hub_push.HubOptions)
    return ap


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The parsed command line over --config's values (flags win); SRC and OUT are required from either."""
    ap = build_parser()
    args = parse(ap, argv, OnnxOptions, Paths, hub_push.HubOptions)
    require_positionals(ap, args, Paths)
    return args


@command
def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    args = parse_args(argv)
    hub_push.check(args)  # before any work
    try:
        src, which = resolve_checkpoint(args.src)
        if which:
            print(f"{args.src} is a training workdir: exporting its {which}/ checkpoint {src}", file=sys.stderr)
        check_exportable(load_config(src))
        model, params = from_pretrained(src)
        summary = export_onnx(params, model.config, args.out, embedding=args.embedding, mask=not args.no_mask,
                              opset=args.opset, model=None if args.no_verify else model, source=src,
                              input_mode=trained_input_mode(src) or "masked", license=args.license,
                              where=args.push_to_hub)
    except (ExhubertError, OSError) as e:
        print(f"error: {args.src}: {e}" if isinstance(e, OnnxExportError) else f"error: {e}", file=sys.stderr)
        return USER_ERROR
    if args.push_to_hub:
        files = [Path(f) for f in summary["files"]]
        with hub_push.staged({(model_card.CARD if f == files[-1] else f.name): f for f in files}) as folder:
            summary["url"] = hub_push.push(folder, args, "ONNX")
        print(f"pushed {', '.join(map(str, files))} to {summary['url']}", file=sys.stderr)
    print(json.dumps({"src": str(src), **summary}))
    return 0
