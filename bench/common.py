"""Shared benchmark helpers: timing statistics, a random HF HuBERT and its converted Flax twin, peak memory."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from typing import Callable

import numpy as np
from exhubert_jax.data.audio import SAMPLE_RATE


def time_calls(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Wall-clock seconds per name, calls alternating round by round so that background load hits all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def stats(times: list[float]) -> dict:
    """Median, spread (min, max, interquartile range) of a list of timings, in seconds."""
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "iqr_s": q[2] - q[0], "n": len(times)}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict:
    """What the numbers were measured on, and the load average (1, 5, 15 min) when measured."""
    import jax
    import torch

    from exhubert_jax.process.huge_pages import hugepage_malloc_active
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "jax": jax.__version__,
            "torch": torch.__version__, "jax_backend": jax.default_backend(), "torch_threads": torch.get_num_threads(),
            "hugepage_malloc": hugepage_malloc_active(), "load_avg": [round(v, 2) for v in os.getloadavg()]}


def hf_and_flax(preset_name: str = "large", seed: int = 0, **overrides):
    """A random transformers HubertForSequenceClassification and (config, params) converted from it."""
    import torch
    from transformers import HubertConfig as HFConfig
    from transformers import HubertForSequenceClassification

    from converters.torch_to_flax import convert
    from exhubert_jax.model.config import from_hf_config, preset, to_hf_config

    cfg = preset(preset_name, **overrides)
    hf_cfg = to_hf_config(cfg)
    torch.manual_seed(seed)
    torch_model = HubertForSequenceClassification(HFConfig(**hf_cfg)).eval()
    state = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
    config = from_hf_config(hf_cfg)
    params, _ = convert(state, config)
    return torch_model, config, params


def audio_batch(batch: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Zero-mean unit-variance noise standing in for normalised 16 kHz speech."""
    return np.random.default_rng(seed).standard_normal((batch, int(seconds * SAMPLE_RATE))).astype(np.float32)


def torch_expanded(config, params=None):
    """The PyTorch twin of a ZLL-expanded model (the code shipped with ZLL exports), loaded strictly from our params
    when given (else randomly initialised, ZLLs at zero)."""
    import torch

    from converters.configuration_exhubert import ExHubertConfig
    from converters.mapping import params_to_state_dict
    from converters.modeling_exhubert import ExHubertForSequenceClassification
    from converters.zll_export import export_config

    model = ExHubertForSequenceClassification(ExHubertConfig.from_dict(export_config(config)))
    if params is not None:
        state = {k: torch.from_numpy(np.array(v)) for k, v in params_to_state_dict(params, config).items()}
        model.load_state_dict(state, strict=True)
    return model
