"""bench/gpu.py on a machine without a GPU: says so and runs its tiny CPU smoke preset end to end."""

import jax
import pytest

from bench import gpu


def test_padded_batch_rows_shrink_to_half_and_padding_is_zero():
    b = gpu.padded_batch(4, 0.5)
    lengths = b["attention_mask"].sum(-1)
    assert lengths[0] == 8000 and lengths[-1] == 4000 and (lengths[:-1] >= lengths[1:]).all()
    assert b["input_values"].dtype.name == "float32" and (b["input_values"][-1, 4000:] == 0).all()


def test_peak_flops_table_and_override():
    assert gpu.peak_flops("NVIDIA H100 80GB HBM3", None) == 989e12
    assert gpu.peak_flops("NVIDIA H100 PCIe", None) == 756e12
    assert gpu.peak_flops("cpu", None) is None
    assert gpu.peak_flops("cpu", 100.0) == 100e12


@pytest.mark.slow
@pytest.mark.skipif(any(d.platform == "gpu" for d in jax.devices()), reason="a GPU is present: the full run applies")
def test_cpu_smoke_run_reports_no_gpu_and_every_measurement(capsys):
    summary = gpu.main([])
    assert summary["gpu_found"] is False and "no GPU found" in summary["note"]
    records = {(r["job"], r.get("attention")): r for r in summary["records"]}
    assert not [r for r in summary["records"] if "error" in r], summary["records"]
    assert records[("ours", "xla")]["steps_per_s"] > 0 and records[("ours", "xla")]["loss_finite"]
    assert records[("pytorch", None)]["steps_per_s"] > 0 and records[("pytorch", None)]["loss_finite"]
    assert records[("flops", None)]["flops_per_step"] > 1e6
    assert records[("parity", None)]["bf16_xla_max_abs_diff"] < 1e-2
    row = summary["summary"][0]
    assert row["speedup_vs_pytorch_amp"] > 0 and row["ours_mfu"] is None
    assert "no GPU found" in capsys.readouterr().out
