"""Waveform augmentation (exhubert_jax.training.augmentation): the spec strings, each kind's arithmetic over the
valid samples (SNR, convolution, resampling, gain), exact-zero padding, draws from the key alone, the banks decoded
from folders, and the banks as arguments of the jitted step (training with it: test_augment_training.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf
from toys import NO_DROPOUT, tiny

import train as cli
from exhubert_jax.data.loading.devices import to_device
from exhubert_jax.process.options import OptionsError
from exhubert_jax.training import stages
from exhubert_jax.training.augmentation import (
    KINDS,
    Augmentation,
    AugmentError,
    augment,
    augmentation_for,
    canonical,
    checked_specs,
    parse_all,
)
from exhubert_jax.data import waveforms as wave
from exhubert_jax.data.banks import RecordingsError, noise_bank, rir_bank
from exhubert_jax.training.optimizer import make_optimizer
from exhubert_jax.training.options import TrainOptions
from exhubert_jax.training.step import TrainError, create_state, make_train_step

LENGTHS = (8000, 5000, 1200, 7999)


def ragged(seed: int = 0, width: int = 8000, lengths: tuple[int, ...] = LENGTHS) -> tuple[jax.Array, jax.Array]:
    """A batch of noisy tones of `lengths` valid samples, zero-padded to `width`, and its mask."""
    rng = np.random.default_rng(seed)
    x, mask = np.zeros((len(lengths), width), np.float32), np.zeros((len(lengths), width), np.int32)
    for i, n in enumerate(lengths):
        t = np.arange(n) / 16000
        x[i, :n] = np.sin(2 * np.pi * (200 + 100 * i) * t) + 0.3 * rng.standard_normal(n)
        mask[i, :n] = 1
    return jnp.asarray(x), jnp.asarray(mask)


def snr_db(clean: np.ndarray, noisy: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-row SNR (dB) of noisy against clean over the valid samples."""
    clean, noisy, valid = (np.asarray(a, np.float64) for a in (clean, noisy, mask))
    return 10 * np.log10(np.sum(clean ** 2 * valid, 1) / np.sum((noisy - clean) ** 2 * valid, 1))


# --------------------------------------------------------------------------------------------------- spec strings


def test_specs_share_the_adapter_syntax_and_have_canonical_defaults():
    assert canonical("noise") == "noise:snr=5-20,p=0.5,colours=white+pink+brown"
    assert canonical("reverb") == "reverb:rt60=0.2-0.8,drr=-5-10,p=0.5"
    assert canonical("speed") == "speed:factors=0.9+1+1.1,p=1"
    assert canonical("gain") == "gain:db=-6-6,p=1"
    assert canonical(" noise: snr=10 , colours=pink+white ") == "noise:snr=10-10,p=0.5,colours=white+pink"
    assert canonical("gain:db=-6--3,p=0.25") == "gain:db=-6--3,p=0.25"
    assert canonical(canonical("reverb:rt60=.3-1.5e0")) == "reverb:rt60=0.3-1.5,drr=-5-10,p=0.5"
    assert set(KINDS) == {"noise", "reverb", "speed", "gain"}


@pytest.mark.parametrize("spec, message", [
    ("echo", "unknown kind 'echo'; choose one of noise, reverb, speed, gain"),
    ("Noise", "'Noise' is not a kind"),
    ("noise:snr", "expected key=value"),
    ("noise:snr=5,snr=6", "option 'snr' given twice"),
    ("noise:level=3", "noise has no option(s) level (options: snr, p, colours)"),
    ("noise:snr=20-5", "snr must be a number or a range LO-HI (LO <= HI), got '20-5'"),
    ("noise:p=1.5", "p must be a probability from 0 to 1, got '1.5'"),
    ("noise:colours=blue", "colours must be colours joined by '+' among white, pink, brown"),
    ("reverb:rt60=0-0.5", "rt60 must be a number or a range LO-HI (LO <= HI) of positive numbers"),
    ("speed:factors=0.9+-1", "factors must be positive numbers joined by '+'"),
    ("gain:db=nan", "db must be a number or a range"),
])
def test_a_bad_spec_names_the_flag_the_spec_and_the_problem(spec, message):
    with pytest.raises(AugmentError) as error:
        checked_specs([spec])
    assert str(error.value).startswith(f"--augment {spec}: ") and message in str(error.value)


def test_a_kind_given_twice_is_refused():
    with pytest.raises(AugmentError, match="noise given more than once"):
        parse_all(["noise", "speed", "noise:snr=3"])
    with pytest.raises(TrainError, match=r"^--augment must be specs KIND\[:key=value,...\]"):
        TrainOptions(augment=("noise", "noise")).validate()


def test_the_flags_parse_to_canonical_specs_in_order(tmp_path):
    args = cli.parse_args(["--augment", "speed", "--augment", "noise:snr=10-15"])
    opts = stages.train_options(args, demo=True)
    assert opts.augment == ("speed:factors=0.9+1+1.1,p=1", "noise:snr=10-15,p=0.5,colours=white+pink+brown")
    assert stages.train_options(cli.parse_args([]), demo=True).augment is None
    (tmp_path / "a.yaml").write_text("augment: gain:db=1\n")  # a config file's one spec, or a list of them
    args = cli.parse_args(["--config", str(tmp_path / "a.yaml"), "--stage", "transfer", "--corpus", "x"])
    assert stages.train_options(args, demo=False).augment == ("gain:db=1-1,p=1",)
    with pytest.raises(AugmentError, match=r"^--augment noise:snr=x: snr must be"):
        cli.parse_args(["--augment", "noise:snr=x"])
    with pytest.raises(SystemExit):  # a stage that does not train
        cli.parse_args(["--stage", "expand", "--augment", "noise"])
    sf.write(tmp_path / "n.wav", np.ones(800), 16000)
    with pytest.raises(AugmentError, match=r"^--noise-dir .* does nothing without --augment noise$"):
        TrainOptions(augment=("reverb",), noise_dir=str(tmp_path)).validate()
    with pytest.raises(OptionsError, match=r"^--rir-dir must be a folder holding audio files \(.wav, .*missing'$"):
        cli.parse_args(["--augment", "reverb", "--rir-dir", str(tmp_path / "missing")])
    with pytest.raises(OptionsError, match="unknown key"):
        (tmp_path / "c.json").write_text('{"augmentation": ["noise"]}')
        cli.parse_args(["--config", str(tmp_path / "c.json")])


# ---------------------------------------------------------------------------------------------------------- kinds


def test_the_snr_achieved_is_the_snr_drawn_over_the_valid_samples():
    x, mask = ragged()
    snr = jnp.asarray([0.0, 7.5, 20.0, -3.0])
    noise = jax.random.normal(jax.random.PRNGKey(1), x.shape) * 5.0  # padding noise too: it must not count
    np.testing.assert_allclose(snr_db(x, wave.mix_at_snr(x, noise, mask, snr), mask), snr, atol=0.01)
    for spec in ("noise:snr=12,p=1,colours=white", "noise:snr=12,p=1,colours=pink",
                 "noise:snr=12,p=1,colours=brown"):
        y, m = augment((spec,), x, mask, jax.random.PRNGKey(2))
        np.testing.assert_allclose(snr_db(x, y, mask), 12.0, atol=0.1)
        assert np.array_equal(m, mask)
    y, _ = augment(("noise:snr=5-20,p=1",), x, mask, jax.random.PRNGKey(3))
    achieved = snr_db(x, y, mask)
    assert np.all((achieved > 5 - 0.1) & (achieved < 20 + 0.1)) and np.ptp(achieved) > 0.5
    bank = jax.random.uniform(jax.random.PRNGKey(4), (3, 2000), minval=-1, maxval=1)
    y, _ = Augmentation(parse_all(["noise:snr=8,p=1"]), {}).apply({"noise": bank}, x, mask, jax.random.PRNGKey(5))
    np.testing.assert_allclose(snr_db(x, y, mask), 8.0, atol=0.1)


@pytest.mark.parametrize("spec", ["noise:p=1", "reverb:p=1", "speed:p=1,factors=0.9+1.1", "gain:p=1",
                                  "noise:p=1,snr=0", "reverb:p=1,rt60=0.5"])
def test_padding_stays_exactly_zero_after_every_kind(spec):
    x, mask = ragged()
    bank = {"noise": jnp.ones((2, 3000)), "rir": jnp.asarray(np.r_[1.0, np.zeros(99), 0.5, np.zeros(99)])[None]}
    for banks in (None, bank):
        y, m = Augmentation(parse_all([spec]), {}).apply(banks, x, mask, jax.random.PRNGKey(0))
        y, m = np.asarray(y), np.asarray(m)
        assert np.all(y[m == 0] == 0.0) and np.all(np.isfinite(y))
        assert not np.allclose(y, np.asarray(x))
        if not spec.startswith("speed"):
            assert np.array_equal(m, mask)


def test_probability_zero_leaves_the_batch_and_probability_applies_per_row():
    x, mask = ragged()
    y, m = augment(("noise:p=0", "reverb:p=0", "speed:p=0", "gain:p=0"), x, mask, jax.random.PRNGKey(0))
    assert np.array_equal(y, x) and np.array_equal(m, mask)
    changed = [not np.array_equal(augment(("gain:p=0.5,db=3",), x, mask, jax.random.PRNGKey(k))[0][0], x[0])
               for k in range(40)]
    assert 8 < sum(changed) < 32


def test_every_draw_comes_from_the_key():
    x, mask = ragged()
    specs = ("noise:p=1", "reverb:p=1", "speed:p=1", "gain:p=1")
    a, b, c = (augment(specs, x, mask, jax.random.PRNGKey(k)) for k in (7, 7, 8))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_speed_resamples_and_the_mask_follows():
    n, width, tone = 6400, 8000, 500.0
    x = np.zeros((3, width), np.float32)
    x[:, :n] = np.sin(2 * np.pi * tone * np.arange(n) / 16000)
    mask = (np.arange(width) < n).astype(np.int32)[None].repeat(3, 0)
    factors = jnp.asarray([1.1, 0.9, 1.0])
    y, m = (np.asarray(a) for a in wave.change_speed(jnp.asarray(x), jnp.asarray(mask), factors, 1.1))
    assert list(m.sum(1)) == [int(n / 1.1), min(width, int(n / 0.9)), n]
    assert np.array_equal(y[2], x[2]) and np.all(y[m == 0] == 0)
    for row, f in ((0, 1.1), (1, 0.9)):
        valid = y[row, :m[row].sum()]
        spectrum = np.abs(np.fft.rfft(valid * np.hanning(len(valid))))
        peak = np.argmax(spectrum) * 16000 / len(valid)
        assert abs(peak - tone * f) < 5, (f, peak)
        inner = slice(50, m[row].sum() - 50)  # the same tone, played faster or slower, away from its edges
        np.testing.assert_allclose(valid[inner], np.sin(2 * np.pi * tone * f * np.arange(len(valid)) / 16000)[inner],
                                   atol=0.02)


def test_reverb_is_a_convolution_cut_to_the_utterance_at_its_dry_level():
    x, mask = ragged()
    rir = np.random.default_rng(0).standard_normal((len(LENGTHS), 900)).astype(np.float32)
    y = np.asarray(wave.convolve(x, jnp.asarray(rir), mask))
    for i, n in enumerate(LENGTHS):
        expected = np.convolve(np.asarray(x[i, :n], np.float64), rir[i])[:n]
        expected *= np.sqrt(np.mean(np.asarray(x[i, :n], np.float64) ** 2) / np.mean(expected ** 2))
        np.testing.assert_allclose(y[i, :n], expected, atol=2e-4 * np.abs(expected).max())
        assert np.all(y[i, n:] == 0)


def test_generated_impulse_responses_have_their_decay_and_direct_to_reverberant_ratio():
    rt60, drr = jnp.asarray([0.3, 0.6]), jnp.asarray([0.0, 8.0])
    h = np.asarray(wave.exponential_rir(jax.random.PRNGKey(0), 16000, rt60, drr), np.float64)
    assert np.all(h[:, 0] == 1.0)
    np.testing.assert_allclose(10 * np.log10(1.0 / np.sum(h[:, 1:] ** 2, 1)), drr, atol=1e-3)
    for row, t60 in enumerate((0.3, 0.6)):
        early, late = (np.mean(h[row, s:s + 400] ** 2) for s in (1, int(t60 * 16000) - 400))
        assert abs(10 * np.log10(late / early) + 60) < 6  # 60 dB down at RT60 (400-sample windows)


def test_generated_noise_has_its_colour():
    slopes = {}
    for name, exponent in wave.COLOURS.items():
        noise = np.asarray(wave.coloured_noise(jax.random.PRNGKey(0), (16, 16000), jnp.full(16, exponent)))
        power = np.mean(np.abs(np.fft.rfft(noise, axis=-1)) ** 2, axis=0)
        slopes[name] = 10 * np.log10(power[400:800].mean() / power[1600:3200].mean())  # two octaves apart
    assert abs(slopes["white"]) < 1 and abs(slopes["pink"] - 6) < 1.5 and abs(slopes["brown"] - 12) < 1.5


def test_gain_is_drawn_in_its_range_of_db():
    x, mask = ragged()
    y, _ = augment(("gain:db=-6-6,p=1",), x, mask, jax.random.PRNGKey(0))
    db = 20 * np.log10(np.abs(np.asarray(y)[:, 0] / np.asarray(x)[:, 0]))
    assert np.all(np.abs(db) <= 6 + 1e-4) and np.ptp(db) > 0.1


# ---------------------------------------------------------------------------------------------------------- banks


def test_banks_are_decoded_resampled_and_cut_to_a_fixed_shape(tmp_path):
    rng = np.random.default_rng(0)
    noise, rirs = tmp_path / "noise", tmp_path / "rirs"
    (noise / "sub").mkdir(parents=True)
    rirs.mkdir()
    sf.write(noise / "a.wav", 0.1 * rng.standard_normal(8000 * 2), 8000)  # 2 s at 8 kHz: 32000 samples at 16 kHz
    sf.write(noise / "sub" / "b.flac", 0.1 * rng.standard_normal((44100 // 10, 2)), 44100)  # 0.1 s stereo: repeated
    sf.write(noise / "silent.wav", np.zeros(16000), 16000)
    tail = np.r_[np.zeros(300), 0.9, 0.5 * rng.standard_normal(30000) * np.exp(-np.arange(30000) / 2000)]
    sf.write(rirs / "room.wav", tail, 16000, subtype="FLOAT")
    bank = noise_bank(noise, 10000, seed=0)
    assert bank.shape == (4, 10000) and bank.dtype == np.float32  # 3 segments of a.wav, 1 of b.flac, no silence
    assert noise_bank(noise, 10000, seed=0, seconds=1.0).shape == (1, 10000)
    rir = rir_bank(rirs, seed=0)
    assert rir.shape == (1, 16000) and np.argmax(np.abs(rir[0])) == 0
    np.testing.assert_allclose(np.sum(rir.astype(np.float64) ** 2), 1.0, rtol=1e-5)
    opts = TrainOptions(augment=("noise", "reverb"), noise_dir=str(noise), rir_dir=str(rirs), max_seconds=0.5)
    aug = augmentation_for(opts)
    assert {k: v.shape for k, v in aug.banks.items()} == {"noise": (5, 8000), "rir": (1, 16000)}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RecordingsError, match=r"^--noise-dir .*empty: no audio files \("):
        noise_bank(empty, 100, 0)
    (empty / "quiet.wav").write_bytes(b"")
    with pytest.raises(Exception, match="quiet.wav: empty file"):
        rir_bank(empty, 0)


def test_the_banks_are_arguments_of_the_step_not_constants():
    model, params, labels = tiny(**NO_DROPOUT)
    tx = make_optimizer(labels, 1e-3)
    aug = Augmentation(parse_all(["noise:p=1,snr=0", "reverb:p=1"]), {})
    step, counter = make_train_step(model, tx, labels, augment=aug)
    x, mask = ragged(width=3200, lengths=(3200, 2000, 1200, 3199))
    batch = to_device({"input_values": np.asarray(x), "attention_mask": np.asarray(mask),
                       "targets": np.arange(4, dtype=np.int32), "weights": np.ones(4, np.float32)}, None)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(2):
        banks = {"noise": jnp.asarray(rng.standard_normal((5, 4000)), jnp.float32),
                 "rir": jnp.asarray(rng.standard_normal((3, 800)), jnp.float32)}
        _, metrics = step(create_state(params, tx, 0), batch, banks)
        losses.append(float(metrics["loss"]))
    plain, plain_counter = make_train_step(model, tx, labels)
    _, metrics = plain(create_state(params, tx, 0), batch)
    assert counter.count == 1 and plain_counter.count == 1
    assert losses[0] != losses[1] and float(metrics["loss"]) not in losses
