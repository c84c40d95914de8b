"""train.py's own flags (the stage, its data, model and process group), declared as exhubert_jax.training.options declares
TrainOptions: the command line is both dataclasses' flags."""

from __future__ import annotations

import dataclasses

from exhubert_jax.adapters import checked_specs
from exhubert_jax.model.config import EXPANSION_STYLES, PRESETS
from exhubert_jax.model.expansion_layout import FREEZE_MODES
from exhubert_jax.model.heads import TASKS
from exhubert_jax.training.options import AT_LEAST_1, NON_NEGATIVE, STAGE_NAMES, TRAINING, Check, option

DTYPES = ("float32", "bfloat16")
PROBABILITY = Check(lambda v: 0.0 <= v < 1.0, "must be at least 0 and below 1")


@dataclasses.dataclass
class StageFlags:
    """What a train.py stage runs on and how, beyond the training options."""

    stage: str = option("finetune", choices=STAGE_NAMES)
    corpora: str | None = option(None, stages=("finetune",),
                                 help="finetune: comma-separated prepared corpora and groups (emoset, unseen, all)")
    corpus: str | None = option(None, stages=("transfer",), help="transfer: the one corpus to fine-tune on")
    data_dir: str | None = option(None, stages=TRAINING,
                                  help="prepared corpora (default $EXHUBERT_DATA or data/prepared)")
    workdir: str | None = option(None, help="run folder (default runs/finetune, runs/expand, runs/transfer-CORPUS)")
    init: str | None = option(None, help="exhubert-jax checkpoint dir (converted HF model, or a stage's best/ or "
                                         "final/), or a Hub id org/name[@revision] (converted on first use)")
    random_init: bool = option(False, action="store_true", stages=TRAINING,
                               help="allow training from random weights on real corpora")
    preset: str | None = option(None, choices=tuple(PRESETS), stages=TRAINING, paper="large", demo="tiny",
                                help="random-init model (default: {demo} for the demo, else {paper})")
    dtype: str = option("float32", choices=DTYPES, help="compute dtype")
    remat: bool = option(False, action="store_true", help="rematerialise encoder layers (less memory)")
    task: str = option("categorical", choices=TASKS, stages=TRAINING,
                       help="finetune/transfer: the 6 classes, arousal/valence/dominance regression, or both heads")
    adapter: list[str] | None = option(
        None, action="append", metavar="SPEC", stages=TRAINING, parse=checked_specs,
        help="finetune/transfer: add an adapter, e.g. lora:r=8,alpha=16,targets=q+v, ia3, bitfit, "
             "bottleneck:size=64,style=houlsby, bbe:copies=1,style=zll (repeat to compose, in order)")
    copies: int = option(1, type=int, check=AT_LEAST_1, stages=("expand",),
                         help="expand: copies per layer (1 = ExHuBERT, 2 = XLarge)")
    style: str = option("zll", choices=EXPANSION_STYLES, stages=("expand",),
                        help="expand: zll (paper), zero_out (LLaMA Pro) or gated (the released ExHuBERT layout)")
    freeze: str = option("original", choices=FREEZE_MODES,
                         help="expand/transfer: freeze the original layers of an expanded model, or nothing")
    layerdrop: float | None = option(None, type=float, check=PROBABILITY, stages=TRAINING,
                                     help="finetune/transfer: LayerDrop probability of this run (default: the "
                                          "model's). A gated model (the released ExHuBERT's layout) with LayerDrop "
                                          "above 0 is refused unless this is given: its authors' code never drops a "
                                          "layer")
    distributed: bool = option(
        False, action="store_true",
        help="multi-host: join the other processes through jax.distributed.initialize() (the coordinator, process "
             "count and id from the flags below, else detected from SLURM, Open MPI, Kubernetes or Cloud TPU "
             "environments)")
    coordinator: str | None = option(None, help="--distributed: HOST:PORT of process 0's coordinator service")
    num_processes: int | None = option(None, type=int, check=AT_LEAST_1,
                                       help="--distributed: number of processes (hosts) in the run")
    process_id: int | None = option(None, type=int, check=NON_NEGATIVE,
                                    help="--distributed: this process's id, 0 .. num-processes - 1")
