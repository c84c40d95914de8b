"""Prepared corpora are TensorFlow Datasets: plain TFDS reads them, stale versions and damaged files are refused
with one line naming the fix, and an interrupted prepare leaves nothing half-written."""

import inspect
import json
from dataclasses import replace

import numpy as np
import pytest
import tensorflow_datasets as tfds

from exhubert_jax.data import audio
from exhubert_jax.data.audio import load_audio, to_pcm16
from exhubert_jax.data.errors import PreparedDataError
from exhubert_jax.data.loading.dataset import open_prepared
from exhubert_jax.data.prepare import builders, decoding, splits
from exhubert_jax.data.prepare.command import main
from exhubert_jax.data.prepare.corpus import prepare_corpus
from exhubert_jax.data.sources import dimensions, emobox, readers, soft_labels
from exhubert_jax.data.sources.corpora import CORPORA, EMOBOX, MANIFEST, fold_entry, get_corpus, user_corpus
from exhubert_jax.data.sources.labels import CLASSES, LabelRule, load_label_table
from tests.test_data_prepare import emodb_tree, make_corpus

QUIET = dict(progress=False, log=lambda m: None)


def test_plain_tfds_reads_a_prepared_corpus(tmp_path):
    prepare_corpus("emodb", emodb_tree(tmp_path / "emodb"), tmp_path / "out", **QUIET)
    record = json.loads((tmp_path / "out/emodb/info.json").read_text())
    builder = tfds.builder_from_directory(str(tmp_path / "out/emodb" / record["version"]))
    assert builder.name == "emodb" and str(builder.version) == record["version"]
    assert builder.info.features["label"].names == list(CLASSES)
    assert builder.info.features["native_label"].names == list("AEFLNTW")
    assert "Burkhardt" in builder.info.citation and builder.info.metadata["sample_rate"] == 16000
    assert tfds.builder("emodb", data_dir=str(tmp_path / "out")).version == builder.version  # the TFDS layout
    sources, ours = builder.as_data_source(), open_prepared("emodb", tmp_path / "out")
    assert {s: len(sources[s]) for s in sources} == {s: len(ours.split(s)) for s in ours.splits}
    for split in ours.splits:
        for i in range(len(sources[split])):
            ex, mine = sources[split][i], ours.split(split)[i]
            path = tmp_path / "emodb" / ex["utterance_id"].decode()
            assert ex["audio"].dtype == np.int16 and np.array_equal(ex["audio"], to_pcm16(load_audio(path)))
            letter = path.stem[5]
            assert builder.info.features["native_label"].int2str(ex["native_label"]) == letter == mine["native_label"]
            assert ex["label"] == mine["label"] == {"W": 3, "A": 3, "L": 0, "E": 0, "T": 0, "F": 5, "N": 1}[letter]
            assert ex["speaker"].decode() == path.stem[:2] == mine["speaker"]
            assert ex["duration"] == pytest.approx(len(ex["audio"]) / 16000)
            np.testing.assert_array_equal(mine["audio"], ex["audio"] / np.float32(32768))


def test_builders_come_from_the_registry():
    cls = builders.builder_class(get_corpus("crema-d"))
    assert cls.name == "crema_d" and issubclass(cls, tfds.core.GeneratorBasedBuilder)
    assert "Open Database License" in cls.MANUAL_DOWNLOAD_INSTRUCTIONS and "Cao et al." in cls.MANUAL_DOWNLOAD_INSTRUCTIONS
    assert "(layout: CREMA-D: AudioWAV/AAAA_SSS_EEE_LL.wav (actor" in cls.MANUAL_DOWNLOAD_INSTRUCTIONS  # its @reader's
    assert builders.builder_class(get_corpus("crema-d")) is cls
    assert builders.builder_class(user_corpus("my.corpus-1")).name == "my_corpus_1"


def test_a_version_change_is_refused_then_rebuilt(tmp_path, monkeypatch):
    manifest = make_corpus(tmp_path / "src")
    prepare_corpus("toy", out=tmp_path / "out", manifest=manifest, **QUIET)
    old = open_prepared("toy", tmp_path / "out").record["version"]
    changed = load_label_table().merged([LabelRule("*", "angry", "angry", "high_neutral", "a changed row")])
    monkeypatch.setattr(builders, "load_label_table", lambda: changed)  # the shipped table changed
    new = builders.corpus_version(user_corpus("toy"))
    assert new != old and new.startswith(f"{builders.SCHEMA}.{readers.MANIFEST_VERSION}.")
    with pytest.raises(PreparedDataError) as err:
        open_prepared("toy", tmp_path / "out")
    message = str(err.value)
    assert "\n" not in message and f"prepared as version {old}, this code reads {new} (its label-table rows " \
        "changed since)" in message
    assert f"python -m exhubert_jax.data.prepare --corpus toy --manifest {manifest}" in message
    logs = []
    prepare_corpus("toy", out=tmp_path / "out", manifest=manifest, progress=False, log=logs.append)
    assert "up to date" not in logs[-1]
    assert open_prepared("toy", tmp_path / "out").record["version"] == new
    assert [p.name for p in (tmp_path / "out/toy").iterdir() if p.is_dir()] == [new]


def test_a_corpus_prepared_under_the_source_digest_rule_is_refused_then_rebuilt(tmp_path):
    manifest = make_corpus(tmp_path / "src")
    prepare_corpus("toy", out=tmp_path / "out", manifest=manifest, **QUIET)
    folder = tmp_path / "out/toy"
    record = json.loads((folder / "info.json").read_text())
    new, old = record["version"], "1.0.41702884"  # what the rule hashing the code's source text gave this corpus
    (folder / new).rename(folder / old)  # its fingerprint was another too: it covers the version
    del record["version_parts"]  # not recorded then
    (folder / "info.json").write_text(json.dumps({**record, "version": old, "fingerprint": "0" * 64}))
    with pytest.raises(PreparedDataError) as err:
        open_prepared("toy", tmp_path / "out")
    message = str(err.value)
    assert "\n" not in message and f"prepared as version {old}, this code reads {new} (the reader, label table, " \
        "split rule or audio decoding changed since); prepare it again: " in message
    assert message.endswith(f"prepare it again: {record['command']}")
    logs = []
    prepare_corpus("toy", out=tmp_path / "out", manifest=manifest, progress=False, log=logs.append)
    assert "up to date" not in logs[-1] and open_prepared("toy", tmp_path / "out").record["version"] == new


def _versions() -> dict[str, str]:
    return {name: builders.corpus_version(entry) for name, entry in CORPORA.items()}


@pytest.mark.parametrize("module,name,value", [
    (builders, "SCHEMA", builders.SCHEMA + 1), (splits, "SPLIT_RULE_VERSION", 2), (splits, "VALID_FRACTION", 0.15),
    (audio, "DECODING_VERSION", audio.DECODING_VERSION + 1), (audio, "MIN_SAMPLES", 800), (dimensions, "RATING_RULE_VERSION", 2),
    (soft_labels, "SOFT_LABEL_RULE_VERSION", soft_labels.SOFT_LABEL_RULE_VERSION + 1),
])
def test_the_shared_rules_move_every_version(monkeypatch, module, name, value):
    before = _versions()
    monkeypatch.setattr(module, name, value)
    after = _versions()
    assert [n for n in before if after[n] == before[n]] == []


def test_a_reader_version_moves_its_corpus_and_its_folds_only(monkeypatch):
    savee = get_corpus("savee")
    folds = [fold_entry(savee, "savee-emobox-fold1", EMOBOX), fold_entry(savee, "savee-fold1of4")]
    before, folds_before = _versions(), [builders.corpus_version(f) for f in folds]
    monkeypatch.setitem(readers.READERS, "savee", replace(readers.READERS["savee"], version=2))
    after = _versions()
    assert [n for n in before if after[n] != before[n]] == ["savee"]
    assert after["savee"].startswith(f"{builders.SCHEMA}.2.")
    assert all(builders.corpus_version(f) != v for f, v in zip(folds, folds_before))


@pytest.mark.parametrize("module,name", [(readers, "MANIFEST_VERSION"), (emobox, "READER_VERSION")])
def test_manifests_and_emobox_folds_have_their_own_version(monkeypatch, module, name):
    fold = fold_entry(get_corpus("emodb"), "emodb-emobox-fold1", EMOBOX)
    version = builders.corpus_version
    before, fold_before, user = _versions(), version(fold), version(user_corpus("x"))
    monkeypatch.setattr(module, name, getattr(module, name) + 1)
    after = _versions()
    moved = [n for n in before if after[n] != before[n]]
    manifest_read = [n for n, c in CORPORA.items() if c.reader == MANIFEST]
    assert moved == (manifest_read if name == "MANIFEST_VERSION" else [])
    assert (version(user_corpus("x")) != user) == (name == "MANIFEST_VERSION")
    assert (version(fold) != fold_before) == (name == "READER_VERSION")


def test_versions_hash_declared_data_not_source_text(monkeypatch):
    before = _versions()

    def no_source(obj):
        raise AssertionError("a corpus version read source text")

    monkeypatch.setattr(inspect, "getsource", no_source)
    monkeypatch.setattr(splits, "__doc__", "an edited docstring")
    monkeypatch.setattr(readers.read_manifest, "__doc__", "an edited docstring")
    assert _versions() == before


def test_a_truncated_file_is_noticed_by_prepare_and_by_readers(tmp_path):
    manifest = make_corpus(tmp_path / "src")
    out = tmp_path / "out"
    prepare_corpus("toy", out=out, manifest=manifest, **QUIET)
    shard = next((out / "toy").glob("*/toy-train.array_record-*"))
    data = shard.read_bytes()
    shard.write_bytes(data[:len(data) // 2])
    with pytest.raises(PreparedDataError) as err:
        open_prepared("toy", out)
    message = str(err.value)
    assert "\n" not in message and str(shard) in message and "truncated" in message
    assert f"rebuild it: python -m exhubert_jax.data.prepare --corpus toy --manifest {manifest} --out {out}" in message
    logs = []
    prepare_corpus("toy", out=out, manifest=manifest, progress=False, log=logs.append)
    assert any(str(shard) in line and "rebuilding" in line for line in logs) and "up to date" not in logs[-1]
    assert shard.read_bytes() == data and len(open_prepared("toy", out).split("train")) > 0


def test_damaged_records_of_the_right_size_fail_with_one_line(tmp_path):
    manifest = make_corpus(tmp_path / "src")
    prepare_corpus("toy", out=tmp_path / "out", manifest=manifest, **QUIET)
    shard = next((tmp_path / "out/toy").glob("*/toy-train.array_record-*"))
    data = bytearray(shard.read_bytes())
    data[:len(data) - 64] = bytes(len(data) - 64)  # same size, zeroed
    shard.write_bytes(bytes(data))
    split = open_prepared("toy", tmp_path / "out").split("train")
    with pytest.raises(PreparedDataError, match=r"split train cannot be read .*rebuild it: python -m") as err:
        split[0]
    assert "\n" not in str(err.value)


def _interrupt_after(n, monkeypatch):
    calls = []

    def load(path, *args):
        calls.append(path)
        if len(calls) > n:
            raise KeyboardInterrupt
        return load_audio(path, *args)

    monkeypatch.setattr(decoding, "load_audio", load)


def test_ctrl_c_is_one_line_and_leaves_no_partial_corpus(tmp_path, monkeypatch, capsys):
    manifest = make_corpus(tmp_path / "src")
    args = ["--corpus", "toy", "--manifest", str(manifest), "--out", str(tmp_path / "out"), "--no-progress"]
    _interrupt_after(5, monkeypatch)
    assert main(args) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("interrupted: toy was not prepared")
    assert list((tmp_path / "out").iterdir()) == []
    monkeypatch.undo()
    assert main(args) == 0
    before = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    _interrupt_after(5, monkeypatch)
    assert main(args + ["--force"]) == 130  # a rebuild interrupted: the previous copy is untouched
    after = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert after == before and len(open_prepared("toy", tmp_path / "out").split("train")) > 0


def test_parse_example_matches_tfds_decoding(tmp_path):
    from exhubert_jax.data.loading.dataset import _parse_proto, parse_example

    root = tmp_path / "src"
    make_corpus(root, n_speakers=3, per_speaker=3)
    rows = (root / "manifest.csv").read_text().splitlines()  # no speakers: empty speaker strings
    (root / "m.csv").write_text("path,label\n" + "\n".join(",".join(r.split(",")[:2]) for r in rows[1:]) + "\n")
    prepare_corpus("nospk", out=tmp_path / "out", manifest=root / "m.csv", **QUIET)
    pc = open_prepared("nospk", tmp_path / "out")
    features = pc.builder.info.features
    raw = pc.builder.as_data_source(split="train", deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    assert len(raw) > 0
    for i in range(len(raw)):
        record = raw[i]
        want = features.deserialize_example_np(record)
        for got in (parse_example(record), _parse_proto(record)):
            assert set(got) == set(want) and got["speaker"] == want["speaker"] == b""
            assert np.array_equal(got["audio"], want["audio"]) and got["audio"].dtype == want["audio"].dtype
            for key in ("label", "native_label", "utterance_id", "duration"):
                assert got[key] == want[key], key
    assert pc.split("train")[0]["speaker"] is None


def test_the_index_records_pcm_digests_genders_and_languages(tmp_path):
    """Each example's PCM digest (exact duplicates), gender and language sit in the index; a corpus prepared before
    they were recorded reads them as unknown (the registry's language still applies), and prepare rebuilds it."""
    from exhubert_jax.data.prepare.plan import pcm_hash

    prepare_corpus("emodb", emodb_tree(tmp_path / "emodb"), tmp_path / "out", **QUIET)
    split = open_prepared("emodb", tmp_path / "out").split("train")
    pcm = split.read_audio(range(len(split)))
    assert list(split.pcm_hashes) == [pcm_hash(p) for p in pcm] and len(set(split.pcm_hashes)) == len(split)
    assert pcm_hash(pcm[0]) == pcm_hash(pcm[0].copy()) != pcm_hash(pcm[0][1:])
    assert set(split.languages) == {"German"} and len(split.genders) == len(split)
    info_path = next((tmp_path / "out/emodb").glob("*/metadata.json"))
    meta = json.loads(info_path.read_text())
    for ix in meta["index"].values():
        for key in ("pcm_hash", "gender", "language"):
            del ix[key]
    info_path.write_text(json.dumps(meta))
    record = json.loads((tmp_path / "out/emodb/info.json").read_text())
    record["files"][info_path.name] = info_path.stat().st_size
    record["fingerprint"] = "before the index had digests"
    (tmp_path / "out/emodb/info.json").write_text(json.dumps(record))
    old = open_prepared("emodb", tmp_path / "out").split("train")
    assert old.pcm_hashes is None and old.genders is None and set(old.languages) == {"German"}
    said = []
    prepare_corpus("emodb", emodb_tree(tmp_path / "emodb"), tmp_path / "out", progress=False, log=said.append)
    assert not any("up to date" in s for s in said)
    assert open_prepared("emodb", tmp_path / "out").split("train").pcm_hashes is not None
