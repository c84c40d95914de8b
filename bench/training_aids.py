"""What the training aids do on real speech: EMO-DB (or any folder in its layout), speaker-independent split, a tiny
model trained from scratch with each recipe and several seeds, scored on the test split clean and under added noise.

    python bench/training_aids.py --source /data/emodb --out runs/aids            # all recipes, seeds 0,1,2
    python bench/training_aids.py --source /data/emodb --out runs/aids --seeds 0 --steps 100   # a quick look

Recipes: plain; --class-weights balanced; --augment noise --augment reverb --augment speed; both. Each run is
train.py's own command (its workdir under OUT/runs, resumed and finished at once when it is done); the test split is
scored with evaluate.py's scoring, clean and with white noise mixed in at 10 dB and 0 dB SNR over each utterance's
samples (seeded: the same noise for every run). Prints a Markdown table: mean test UAR over the seeds, each seed's
UAR with its 95 % bootstrap interval, the same under noise. The figures depend on the machine and the seed: quote
them as measured, with this command.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RECIPES = {
    "plain": [],
    "class weights": ["--class-weights", "balanced"],
    "augmentation": ["--augment", "noise", "--augment", "reverb", "--augment", "speed"],
    "both": ["--class-weights", "balanced", "--augment", "noise", "--augment", "reverb", "--augment", "speed"],
}
NOISE_SNRS = (10.0, 0.0)  # dB, over each utterance's samples
NOISE_SEED = 1234


def run_quietly(main, argv: list[str]) -> str:
    """A command's main(argv) in this process; its stdout (stderr passes through); exits on failure."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    if code:
        sys.stderr.write(out.getvalue())
        raise SystemExit(f"{main.__module__}.main({' '.join(argv)}) exited {code}")
    return out.getvalue()


def prepare(source: Path, data: Path) -> None:
    """EMO-DB, split by speaker (its registry split), into `data`."""
    from exhubert_jax.data.prepare import command as prepare_command

    run_quietly(prepare_command.main, ["--corpus", "emodb", "--source", str(source), "--out", str(data),
                                       "--no-progress"])


def train(data: Path, workdir: Path, seed: int, args: argparse.Namespace, extra: list[str]) -> Path:
    """train.py --stage finetune on emodb with a tiny model from scratch (the demo's learning rate and batch size:
    the paper's 5e-5 is for fine-tuning a pretrained model); the best/ checkpoint."""
    import train as train_script

    run_quietly(train_script.main, ["--stage", "finetune", "--corpora", "emodb", "--data-dir", str(data),
                                    "--random-init", "--preset", "tiny", "--steps", str(args.steps), "--eval-every",
                                    str(max(args.steps // 8, 1)), "--lr", str(args.lr), "--batch-size", "8",
                                    "--max-seconds", str(args.max_seconds), "--seed", str(seed), "--workdir",
                                    str(workdir), "--quiet", *extra])
    return workdir / "best"


class NoisySplit:
    """A prepared split whose audio gets white noise at `snr_db` over its samples (the same noise every time)."""

    def __init__(self, split, snr_db: float, seed: int):
        self.split, self.snr_db, self.seed = split, snr_db, seed

    def __getattr__(self, name):
        return getattr(self.split, name)

    def __len__(self) -> int:
        return len(self.split)

    def read_audio(self, indices) -> list[np.ndarray]:
        """The split's audio of `indices` (16-bit PCM scale, as the split reads it) with the noise mixed in."""
        import jax
        import jax.numpy as jnp

        from exhubert_jax.data.waveforms import coloured_noise, mix_at_snr

        noisy = []
        for i, pcm in zip(indices, self.split.read_audio(indices)):
            x = jnp.asarray(pcm, jnp.float32)[None]
            noise = coloured_noise(jax.random.fold_in(jax.random.key(self.seed), int(i)), x.shape, jnp.zeros(1))
            noisy.append(np.asarray(mix_at_snr(x, noise, jnp.ones_like(x), jnp.full(1, self.snr_db))[0]))
        return noisy


def score(checkpoint: Path, data: Path, snr_db: float | None) -> dict:
    """Test-split metrics of a checkpoint (UAR with its bootstrap interval), clean or with noise at snr_db."""
    from exhubert_jax import from_pretrained
    from exhubert_jax.data.loading import dataset
    from exhubert_jax.evaluation import statistics
    from exhubert_jax.evaluation.scoring import evaluate_corpus

    model, params = from_pretrained(checkpoint)
    corpus = dataset.open_prepared("emodb", data)
    if snr_db is not None:
        clean = corpus

        class Noisy:  # the corpus, whose splits are the noisy ones
            def __getattr__(self, name):
                return getattr(clean, name)

            def split(self, name):
                return NoisySplit(clean.split(name), snr_db, NOISE_SEED)

        corpus = Noisy()
    result = evaluate_corpus(model, params, corpus, "test")
    statistics.add_metric_intervals(result, 1000, 0)
    return result


def uar_cell(result: dict) -> str:
    """'41.2 [30.1, 52.0]' (UAR and its 95 % interval, in %)."""
    low, high = result["intervals"]["uar"]
    return f"{100 * result['uar']:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def main(argv=None) -> int:
    """Prepare, train every recipe and seed, score, print the table (and write OUT/results.json)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", required=True, help="EMO-DB as downloaded (its wav/ folder inside)")
    p.add_argument("--out", default="runs/training-aids", help="data, runs and results.json go here")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    p.add_argument("--steps", type=int, default=400, help="training rounds per run")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (the demo's, for a model from scratch)")
    p.add_argument("--max-seconds", type=float, default=2.0, help="training crop length in seconds")
    p.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated, of {', '.join(RECIPES)}")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        p.error(f"--recipes: unknown {', '.join(unknown)}")
    out = Path(args.out)
    data = out / "data"
    if not (data / "emodb").is_dir():
        prepare(Path(args.source), data)
    rows = {}
    for recipe in recipes:
        for seed in seeds:
            best = train(data, out / "runs" / f"{recipe.replace(' ', '-')}-seed{seed}", seed, args,
                         RECIPES[recipe])
            rows[(recipe, seed)] = {"clean": score(best, data, None),
                                    **{f"{snr:g} dB": score(best, data, snr) for snr in NOISE_SNRS}}
            print(f"{recipe}, seed {seed}: " + ", ".join(f"{k} {uar_cell(v)}" for k, v in rows[(recipe, seed)].items()),
                  file=sys.stderr, flush=True)
    conditions = ["clean", *(f"{snr:g} dB" for snr in NOISE_SNRS)]
    lines = ["| recipe | " + " | ".join(f"test UAR, {c} (mean over seeds; each seed [95 % CI])" for c in conditions)
             + " |", "|---|" + "---|" * len(conditions)]
    for recipe in recipes:
        cells = []
        for c in conditions:
            each = [rows[(recipe, s)][c] for s in seeds]
            cells.append(f"**{100 * np.mean([r['uar'] for r in each]):.1f}**: " + "; ".join(uar_cell(r) for r in each))
        lines.append(f"| {recipe} | " + " | ".join(cells) + " |")
    n_test = rows[(recipes[0], seeds[0])]["clean"]["n"]
    print("\n".join(lines) + f"\n\nEMO-DB test split: {n_test} utterances; seeds {', '.join(map(str, seeds))}; "
          f"{args.steps} rounds at lr {args.lr:g}, crops of {args.max_seconds:g} s; tiny model from scratch.")
    (out / "results.json").write_text(json.dumps(
        {f"{r}|{s}": {c: {k: v for k, v in res.items() if k != "utterances"} for c, res in cond.items()}
         for (r, s), cond in rows.items()}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
