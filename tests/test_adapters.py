"""Functional adapters: identity at init, purity, only trainable leaves move, composition, merge, peft round trip."""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers import HubertForSequenceClassification as TorchSeqCls

from converters import flax_to_torch, torch_to_flax
from converters.peft_io import PeftError, export_peft
from converters.torch_to_flax import convert
from exhubert_jax import adapters, from_pretrained, save_pretrained
from exhubert_jax.adapters import __main__ as adapters_cli, build
from exhubert_jax.adapters.core import is_adapter_leaf
from exhubert_jax.adapters.registry import AdapterSpecError, parse_spec
from exhubert_jax.model.config import ConfigError, HubertConfig, from_hf_config, preset
from exhubert_jax.model.hubert import HubertForSequenceClassification, init_params
from exhubert_jax.model.param_labels import FROZEN, TRAINABLE, count, path_str
from exhubert_jax.training.optimizer import make_optimizer, state_size
from exhubert_jax.training.step import create_state, make_train_step
from hf_models import padded_batch, save_tiny, torch_forward

jax.config.update("jax_default_matmul_precision", "highest")

cached_init = functools.lru_cache(maxsize=None)(init_params)
SPECS = {
    "lora": ["lora:r=4,alpha=8,targets=q+k+v+out+ff1+ff2"],
    "ia3": ["ia3"],
    "bitfit": ["bitfit"],
    "houlsby": ["bottleneck:size=8"],
    "pfeiffer": ["bottleneck:size=8,style=pfeiffer"],
    "bbe": ["bbe:copies=1,style=zll"],
    "bbe+lora": ["bbe:copies=1,style=zll", "lora:r=2"],
    "lora+ia3+bitfit": ["lora:r=2,targets=q+v", "ia3:targets=v+ff1", "bitfit"],
}


def tiny(stable: bool = True) -> HubertConfig:
    """Tiny config without stochastic layers."""
    return preset("tiny", do_stable_layer_norm=stable, layerdrop=0.0)


def audio(seed: int = 0):
    """Two utterances, the second padded."""
    x, mask = padded_batch((4000, 2900), seed)
    return jnp.asarray(x), jnp.asarray(mask)


def logits(config, params, x, mask):
    """Deterministic logits."""
    return np.asarray(build(config).apply({"params": params}, x, mask).logits)


def perturb(params, config, seed: int = 1):
    """Non-trivial values for every adapter leaf (ia3 around one) and every bias, so nothing hides behind zeros."""
    rng = np.random.default_rng(seed)

    def one(path, p):
        name = path_str(path)
        if name.endswith("/ia3"):
            return jnp.asarray(1.0 + 0.3 * rng.standard_normal(p.shape), jnp.float32)
        if is_adapter_leaf(name) or name.endswith("/bias"):
            return p + jnp.asarray(0.1 * rng.standard_normal(p.shape), jnp.float32)
        return p

    return jax.tree_util.tree_map_with_path(one, params)


@functools.lru_cache(maxsize=None)
def reference_logits(stable: bool) -> np.ndarray:
    """Logits of the unadapted tiny model."""
    config = tiny(stable)
    return logits(config, cached_init(config, 0), *audio())


# every method in the pre-LN layout; the post-LN layout for the ones that change the layer's computation
IDENTITY_CASES = [(n, True) for n in sorted(SPECS)] + [(n, False) for n in ("houlsby", "lora+ia3+bitfit", "bbe+lora")]


@pytest.mark.parametrize("name,stable", IDENTITY_CASES)
def test_identity_at_initialisation_and_purity(name, stable):
    config = tiny(stable)
    params = jax.tree.map(np.array, cached_init(config, 0))  # mutable numpy leaves
    before = jax.tree.map(np.copy, params)
    new_params, new_config, labels = adapters.apply_spec(params, config, SPECS[name])
    diff = np.abs(logits(new_config, new_params, *audio()) - reference_logits(stable)).max()
    assert diff <= 1e-6, diff
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(before)):
        np.testing.assert_array_equal(a, b)
    assert config.adapters == () and len(new_config.adapters) == len(SPECS[name])
    assert jax.tree.structure(labels) == jax.tree.structure(new_params)


def test_lora_and_bottleneck_initial_values():
    config = tiny()
    params, _, _ = adapters.apply_spec(cached_init(config, 0), config, ["lora:r=4", "bottleneck:size=8"])
    q = params["hubert"]["encoder"]["layers"]["attention"]["q_proj"]
    assert q["lora_a"].shape == (2, 32, 4) and q["lora_b"].shape == (2, 4, 32)
    bound = 1 / np.sqrt(32)
    assert 0 < np.abs(q["lora_a"]).max() <= bound and not np.any(np.asarray(q["lora_b"]))
    assert not np.array_equal(q["lora_a"][0], q["lora_a"][1])  # each stacked layer draws its own A
    adapter = params["hubert"]["encoder"]["layers"]["ffn_adapter"]
    assert adapter["down"]["kernel"].shape == (2, 32, 8) and not np.any(np.asarray(adapter["up"]["kernel"]))
    assert "k_proj" in params["hubert"]["encoder"]["layers"]["attention"]
    assert "lora_a" not in params["hubert"]["encoder"]["layers"]["attention"]["k_proj"]


def labels_by_name(labels):
    return {path_str(p): lab for p, lab in jax.tree_util.tree_leaves_with_path(labels)}


def test_labels_per_method_and_composition():
    config = tiny()
    params = cached_init(config, 0)
    head = ("projector/", "classifier/")
    _, _, lab = adapters.apply_spec(params, config, "lora:r=2")
    for name, label in labels_by_name(lab).items():
        want = TRAINABLE if name.endswith(("/lora_a", "/lora_b")) or name.startswith(head) else FROZEN
        assert label == want, name
    _, _, lab = adapters.apply_spec(params, config, "bitfit")
    for name, label in labels_by_name(lab).items():
        trains = name.startswith(head) or (name.endswith("/bias") and not name.startswith("hubert/feature_extractor"))
        assert label == (TRAINABLE if trains else FROZEN), name
    # bbe then lora: originals and copies frozen, the ZLLs (bbe's adapter leaves), LoRA on both, and the head train
    _, cfg, lab = adapters.apply_spec(params, config, ["bbe:copies=1", "lora:r=2"])
    flat = labels_by_name(lab)
    assert flat["hubert/encoder/expansion/zll/kernel"] == TRAINABLE
    assert flat["hubert/encoder/expansion/layers/attention/q_proj/lora_b"] == TRAINABLE
    assert flat["hubert/encoder/layers/attention/q_proj/lora_b"] == TRAINABLE
    assert flat["hubert/encoder/expansion/layers/attention/q_proj/kernel"] == FROZEN
    assert flat["hubert/encoder/layers/feed_forward/output_dense/bias"] == FROZEN
    # bbe alone keeps today's labels; labels are recomputed from the config alone
    p2, c2, lab2 = adapters.apply_spec(params, config, "bbe:copies=1,freeze=none")
    assert labels_by_name(lab2)["hubert/encoder/layers/attention/q_proj/kernel"] == TRAINABLE
    assert adapters.labels(p2, c2) == lab2
    _, _, old = adapters.expand(params, config, copies=1, freeze="none")
    assert old == lab2


def test_spec_and_order_errors():
    config = tiny()
    params = cached_init(config, 0)
    assert parse_spec("lora:rank=4, targets=v+q") == ("lora", {"r": 4, "alpha": 16.0, "targets": ("q", "v")})
    for bad, match in [("lora:r=0", "positive"), ("lora:r=two", "number"), ("lora:targets=q+x", "unknown target"),
                       ("bottleneck:style=x", "houlsby"), ("dora", "unknown adapter method"),
                       ("ia3:r=2", "no option"), ("lora:r", "key=value")]:
        with pytest.raises(AdapterSpecError, match=match):
            adapters.apply_spec(params, config, bad)
    p, c, _ = adapters.apply_spec(params, config, "lora")
    with pytest.raises(adapters.AdapterError, match="already has a 'lora'"):
        adapters.apply_spec(p, c, "lora")
    with pytest.raises(adapters.AdapterError, match="first"):
        adapters.apply_spec(p, c, "bbe")
    with pytest.raises(ConfigError, match="unmerged adapters"):
        flax_to_torch.export(p, c, "unused")
    loose = config.replace(adapters=("lora:r=8",))  # the config checks a spec's syntax only
    with pytest.raises(ConfigError, match="canonical"):  # the adapters check its meaning when they wrap the model
        adapters.build(loose)
    for bad, match in [("lora r=8", "not a method name"), ("lora:r", "key=value"), ("lora:r=1,r=2", "twice")]:
        with pytest.raises(ConfigError, match=match):
            config.replace(adapters=(bad,))
    with pytest.raises(ConfigError, match="adapters.build"):  # never silently run as plain HuBERT
        HubertForSequenceClassification(c).init(jax.random.PRNGKey(0), jnp.zeros((1, 400)))


def test_config_round_trip(tmp_path):
    config = tiny()
    params, new_config, _ = adapters.apply_spec(cached_init(config, 0), config, ["lora:r=2", "bottleneck:size=4"])
    params = perturb(params, new_config)
    save_pretrained(tmp_path / "m", new_config, params)
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["adapters"] == ["lora:r=2,alpha=16,targets=q+v", "bottleneck:size=4,style=houlsby"]
    model, loaded = from_pretrained(tmp_path / "m")
    assert model.config == new_config
    x, mask = audio()
    np.testing.assert_array_equal(logits(model.config, loaded, x, mask), logits(new_config, params, x, mask))


@functools.lru_cache(maxsize=None)
def trained(name: str, steps: int = 2) -> dict:
    """Adapt a tiny model and take `steps` train steps; host copies of params before and after, and stats."""
    config = tiny()
    params, config, labels = adapters.apply_spec(cached_init(config, 3), config, SPECS[name])
    tx = make_optimizer(labels, 1e-3)
    step, _ = make_train_step(build(config), tx, labels)
    state = create_state(params, tx, seed=0)
    start = jax.device_get(params)
    for i in range(steps):
        x, mask = audio(i)
        targets = jnp.asarray([i % 6, (i + 3) % 6])
        state, metrics = step(state, {"input_values": x, "attention_mask": mask, "targets": targets,
                                      "weights": jnp.ones(2, jnp.float32)})
        assert bool(metrics["ok"])
    return dict(start=start, end=jax.device_get(state.params), labels=labels, state_size=state_size(tx, start))


@pytest.mark.parametrize("name", ["lora", "ia3", "bitfit", "houlsby", "bbe+lora"])
def test_only_trainable_leaves_move(name):
    run = trained(name)
    start, end, labels = run["start"], run["end"], run["labels"]
    for (path, a), b, lab in zip(jax.tree_util.tree_leaves_with_path(start), jax.tree.leaves(end),
                                 jax.tree.leaves(labels)):
        if lab == FROZEN:
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), f"frozen {path_str(path)} changed"
        else:
            assert not np.array_equal(a, b), f"trainable {path_str(path)} did not move"
    n = count(start, labels, TRAINABLE)
    assert n < count(start) // 2
    assert 2 * n <= run["state_size"] <= 2 * n + 8  # AdamW moments for trainable leaves only


@pytest.fixture(scope="module")
def hf_tiny(tmp_path_factory):
    """A tiny random transformers model and our converted (config, params)."""
    path = tmp_path_factory.mktemp("hf") / "base"
    torch_model = save_tiny(path, "large")
    config = from_hf_config(json.loads((path / "config.json").read_text())).replace(layerdrop=0.0)
    state = {k: v.detach().numpy() for k, v in torch_model.state_dict().items()}
    params, _ = convert(state, config)
    return config, params


@pytest.mark.parametrize("name", ["lora+ia3+bitfit", "lora"])
def test_merge_exports_to_stock_transformers(tmp_path, hf_tiny, name, capsys):
    config, params = hf_tiny
    params, config, _ = adapters.apply_spec(params, config, SPECS[name])
    params = perturb(params, config)
    x, mask = padded_batch()
    ours = logits(config, params, jnp.asarray(x), jnp.asarray(mask))
    merged, plain = adapters.merge(params, config)
    assert plain.adapters == () and not any(is_adapter_leaf(path_str(p))
                                            for p, _ in jax.tree_util.tree_leaves_with_path(merged))
    save_pretrained(tmp_path / "ours", config, params)
    assert flax_to_torch.main([str(tmp_path / "ours"), str(tmp_path / "pt"), "--merge"]) == 0
    assert json.loads(capsys.readouterr().out)["merged_adapters"] == list(config.adapters)
    theirs, _ = torch_forward(TorchSeqCls.from_pretrained(tmp_path / "pt").eval(), x, mask)
    assert np.abs(theirs - ours).max() <= 1e-4


def test_export_without_merge_points_to_it_and_merge_refuses_bottleneck(tmp_path, hf_tiny, capsys):
    config, params = hf_tiny
    for specs, flags, message in ((["lora:r=2"], [], "--merge"),
                                  (["lora:r=2", "bottleneck:size=4"], ["--merge"], "bottleneck:size=4,style=houlsby "
                                                                                   "cannot be merged")):
        p, c, _ = adapters.apply_spec(params, config, specs)
        save_pretrained(tmp_path / "ours", c, p)
        assert flax_to_torch.main([str(tmp_path / "ours"), str(tmp_path / "pt"), *flags]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and not (tmp_path / "pt").exists()


def test_merge_keeps_unmergeable():
    config = tiny()
    params, cfg, _ = adapters.apply_spec(cached_init(config, 0), config, ["bottleneck:size=4", "ia3"])
    merged, left = adapters.merge(params, cfg)
    assert left.adapters == ("bottleneck:size=4,style=houlsby",)
    assert "ffn_adapter" in merged["hubert"]["encoder"]["layers"]


def test_peft_round_trip(tmp_path, hf_tiny):
    from peft import PeftModel

    config, params = hf_tiny
    params, config, _ = adapters.apply_spec(params, config, ["lora:r=3,alpha=6,targets=q+v+ff1", "ia3:targets=v"])
    params = perturb(params, config)
    save_pretrained(tmp_path / "ours", config, params)
    assert flax_to_torch.main([str(tmp_path / "ours"), str(tmp_path / "peft"), "--peft"]) == 0
    assert {p.name for p in (tmp_path / "peft").iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    assert {p.name for p in (tmp_path / "peft" / "base").iterdir()} == {"config.json", "model.safetensors",
                                                                      "preprocessor_config.json", "README.md"}
    base = TorchSeqCls.from_pretrained(tmp_path / "peft" / "base")
    assert not any("lora" in name for name, _ in base.named_parameters())
    peft_model = PeftModel.from_pretrained(base, tmp_path / "peft").eval()
    x, mask = padded_batch()
    with torch.no_grad():
        theirs = peft_model(input_values=torch.from_numpy(x), attention_mask=torch.from_numpy(mask)).logits.numpy()
    ours = logits(config, params, jnp.asarray(x), jnp.asarray(mask))
    assert np.abs(theirs - ours).max() <= 1e-4
    # peft -> ours: the same function again (IA3 was folded into the base and into B on export)
    out = tmp_path / "back"
    assert torch_to_flax.main([str(tmp_path / "peft" / "base"), str(out), "--peft", str(tmp_path / "peft")]) == 0
    model, back = from_pretrained(out)
    assert model.config.adapters == ("lora:r=3,alpha=6,targets=q+v+ff1",)
    assert np.abs(logits(model.config, back, jnp.asarray(x), jnp.asarray(mask)) - ours).max() <= 1e-4
    np.testing.assert_allclose(back["hubert"]["encoder"]["layers"]["attention"]["q_proj"]["lora_a"],
                               params["hubert"]["encoder"]["layers"]["attention"]["q_proj"]["lora_a"], atol=1e-7)


def test_peft_errors(tmp_path, hf_tiny):
    config, params = hf_tiny
    with pytest.raises(PeftError, match="no LoRA"):
        export_peft(params, config, tmp_path / "x")
    p, c, _ = adapters.apply_spec(params, config, ["lora:r=2", "bottleneck:size=4"])
    with pytest.raises(PeftError, match="bottleneck"):
        export_peft(p, c, tmp_path / "x")
    (tmp_path / "ad").mkdir()
    (tmp_path / "ad" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "use_dora": True,
                                                                     "target_modules": ["q_proj"]}))
    from converters.peft_io import import_peft
    with pytest.raises(PeftError, match="use_dora"):
        import_peft(params, config, tmp_path / "ad")


def test_cli_counts_large(capsys):
    assert adapters_cli.main(["--preset", "large", "--adapter", "lora:r=8"]) == 0
    out = capsys.readouterr().out
    # 24 layers x 2 projections x (1024*8 + 8*1024) LoRA parameters, plus the 263,942 of the head
    assert json.loads(out.strip().splitlines()[-1])["trainable"] == 24 * 2 * (1024 * 8 + 8 * 1024) + 263_942
    assert "786,432" in out
    assert adapters_cli.main(["--preset", "large", "--adapter", "lora:r=0"]) == 2
