"""The leakage audit (python -m exhubert_jax.data.audit) and train.py's exact-duplicate pre-check: planted copies
(exact, resampled to 8 kHz and back, -6 dB, trimmed by 0.1 s, Ogg Vorbis) across two prepared corpora are found
where they sit, the same speaker saying the same sentence in another emotion is not a duplicate, speaker overlap is
found, and a corpus prepared before PCM digests were recorded is still audited."""

from __future__ import annotations

import io
import json
import os
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from exhubert_jax.data.audio import to_pcm16
from exhubert_jax.data.audit.command import main
from exhubert_jax.data.audit.exact import leak_warning
from exhubert_jax.data.audit.fingerprints import Fingerprint, fingerprint
from exhubert_jax.data.audit.near import MAX_POSTINGS, candidates, inverted_index, near_duplicates, vote_parts
from exhubert_jax.data.loading.dataset import open_prepared
from exhubert_jax.data.prepare.corpus import prepare_corpus

QUIET = {"progress": False, "log": lambda m: None}
SR = 16000
VOWELS = ((730, 1090, 2440), (530, 1840, 2480), (270, 2290, 3010), (570, 840, 2410), (300, 870, 2240),
          (660, 1720, 2410), (400, 1920, 2560), (490, 1350, 2250))


def sentence(text: int, speaker: int, f0_scale: float = 1.0, rate_scale: float = 1.0) -> np.ndarray:
    """A generated "sentence": the vowel sequence `text` picks, spoken by `speaker` (F0, vocal tract), with the
    emotion's F0 level and speaking rate as scales."""
    words = np.random.default_rng(1000 + text)
    voice = np.random.default_rng(2000 + speaker)
    f0, vtl = (100 + 12 * (speaker % 10) + 3 * (speaker // 10)) * f0_scale, voice.uniform(0.9, 1.1)
    vowels = np.asarray(VOWELS, float)[words.integers(0, len(VOWELS), 10)] * vtl
    rate = 4.0 * (1 + 0.03 * (speaker % 7)) * rate_scale
    t = np.arange(int(len(vowels) / rate * SR)) / SR
    syl = np.minimum((t * rate).astype(int), len(vowels) - 1)
    contour = f0 * (1 + 0.15 * np.sin(2 * np.pi * 0.6 * t + text))
    phase = 2 * np.pi * np.cumsum(contour) / SR
    k = np.arange(1, int(3900 / contour.max()) + 1)
    gains = (1 / (1 + ((k[None, :, None] * f0 - vowels[:, None, :]) / 120.0) ** 2)).sum(2) + 0.02
    x = (gains[syl] * np.sin(np.outer(phase, k))).sum(1)
    x *= np.sin(np.pi * np.clip(((t * rate) % 1 - 0.1) / 0.75, 0, 1)) ** 2
    x += 0.005 * np.random.default_rng(text * 100 + speaker).standard_normal(x.shape[0])
    return (0.7 * x / np.abs(x).max()).astype(np.float32)


def ogg(x: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    sf.write(buf, x, SR, format="OGG", subtype="VORBIS")
    buf.seek(0)
    return sf.read(buf, dtype="float32")[0]


COPIES = {"8k": lambda x: soxr.resample(soxr.resample(x, SR, 8000), 8000, SR),
          "gain": lambda x: x * np.float32(10 ** (-6 / 20)), "trim": lambda x: x[int(0.1 * SR):], "ogg": ogg}


def write_corpus(root: Path, rows: list[tuple[str, np.ndarray, str, str, str]]) -> Path:
    """Wav files and a manifest (path, label, speaker, split)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["path,label,speaker,split"]
    for name, audio, label, speaker, split in rows:
        ext = ".ogg" if name.endswith("ogg") else ".wav"
        sf.write(root / f"{name}{ext}", audio, SR, **({"format": "OGG", "subtype": "VORBIS"} if ext == ".ogg" else {}))
        lines.append(f"{name}{ext},{label},{speaker},{split}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


LABELS = ("angry", "sad", "neutral", "happy")


def base_rows(corpus: int, n_speakers: int, split_of) -> list:
    """Eight sentences per speaker, each speaker's texts 0-3 in two emotions (same text, other F0 and rate)."""
    rows = []
    for s in range(n_speakers):
        speaker = corpus * 10 + s
        for text in range(4):
            for e, (f0, rate) in enumerate(((1.0, 1.0), (1.35, 1.25))):
                rows.append((f"s{speaker}_t{text}_e{e}", sentence(text, speaker, f0, rate), LABELS[(text + e) % 4],
                             f"spk{speaker}", split_of(s)))
    return rows


SPLIT_A = {0: "train", 1: "train", 2: "validation", 3: "test"}
SPLIT_B = {0: "train", 1: "validation", 2: "test"}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Corpora alpha and beta with planted copies; returns (data dir, the expected pairs)."""
    root = tmp_path_factory.mktemp("audit")
    a = base_rows(1, 4, SPLIT_A.get)
    b = base_rows(2, 3, SPLIT_B.get)
    audio = {r[0]: r[1] for r in a + b}
    # (copy, of, transform, into corpus, speaker, split)
    plants = [("p_exact", "s10_t0_e0", None, b, "spk22", "test"),  # alpha train -> beta test: cross-corpus leak
              ("p_8k", "s10_t1_e0", "8k", a, "spk13", "test"),  # alpha train -> alpha test: leak within a corpus
              ("p_gain", "s11_t2_e1", "gain", b, "spk21", "validation"),  # alpha train -> beta validation
              ("p_trim", "s12_t3_e0", "trim", a, "spk12", "validation"),  # alpha validation, within the split
              ("p_ogg", "s20_t1_e1", "ogg", a, "spk13", "test")]  # beta train -> alpha test: cross-corpus leak
    for name, of, how, rows, speaker, split in plants:
        rows.append((name, audio[of] if how is None else COPIES[how](audio[of]), "neutral", speaker, split))
    a.append(("shared_speaker", sentence(7, 10), "sad", "spk10", "test"))  # spk10 is a training speaker
    data = root / "prepared"
    for name, rows in (("alpha", a), ("beta", b)):
        prepare_corpus(name, out=data, manifest=write_corpus(root / name, rows), **QUIET)
    return data, {p[0]: p[1] for p in plants}


def pair_names(pairs):
    return {frozenset(Path(p[s]["path"]).stem for s in "ab"): p for p in pairs}


def test_planted_copies_are_found_where_they_sit(planted, tmp_path, capsys):
    data, plants = planted
    assert main(["--data-dir", str(data), "--out", str(tmp_path / "report"), "--no-progress"]) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and line.startswith("audit of 2 corpora") and str(tmp_path / "report") in line
    doc = json.loads((tmp_path / "report/audit.json").read_text())
    exact, near = pair_names(doc["exact"]), pair_names(doc["near"])
    assert set(exact) == {frozenset({"p_exact", "s10_t0_e0"})}
    want = {"p_8k": ("across splits", "test"), "p_gain": ("across corpora", "validation"),
            "p_trim": ("within split", None), "p_ogg": ("across corpora", "test")}
    assert set(near) == {frozenset({c, plants[c]}) for c in want}  # and nothing else: no same-text pair
    for copy, (where, leak) in want.items():
        p = near[frozenset({copy, plants[copy]})]
        assert (p["placement"], p["leak"]) == (where, leak), copy
        if leak:  # the training side first, each side named with its corpus and split
            assert Path(p["a"]["path"]).stem == plants[copy] and p["a"]["split"] == "train"
    p = exact[frozenset({"p_exact", "s10_t0_e0"})]
    assert (p["placement"], p["leak"], p["a"]["corpus"], p["b"]["corpus"], p["b"]["split"]) == \
        ("across corpora", "test", "alpha", "beta", "test")
    assert doc["summary"]["test_into_train"] == 3 and doc["summary"]["validation_into_train"] == 1
    report = (tmp_path / "report/report.md").read_text()
    assert "## Leakage" in report and "beta/test: `p_exact.wav`" in report
    assert {p.name for p in (tmp_path / "report").iterdir()} == {"report.md", "audit.json", "durations.png",
                                                                 "classes.png", "quality.png"}
    # speaker overlap: spk10 is in alpha's train and test; the record says so, and the audit finds it
    speakers = doc["speakers"]["alpha"]
    assert speakers["shared"] == {"train-test": ["spk10"]}
    assert speakers["claimed"]["speaker_independent"] is False and speakers["verdict"] == "confirmed"
    assert doc["speakers"]["beta"]["verdict"] == "confirmed" and not doc["speakers"]["beta"]["shared"]
    stats = doc["stats"]["alpha/train"]
    assert stats["n"] == 16 and stats["source_rates"] == {"16000": 16} and stats["seconds"]["min"] > 1.5
    assert doc["stats"]["alpha/test"]["source_rates"] == {"16000": 11}


def test_strict_and_json(planted, tmp_path, capsys):
    data, _ = planted
    args = ["--data-dir", str(data), "--out", str(tmp_path / "r")]
    assert main(args + ["--strict", "--json"]) == 1
    out = capsys.readouterr()
    doc = json.loads(out.out)  # the document alone on stdout
    assert out.out.count("\n") == 1 and doc["summary"]["test_into_train"] == 3
    assert main(args + ["--strict", "--corpus", "beta", "--no-progress"]) == 0  # beta alone: no test file leaks
    assert "0 test" in capsys.readouterr().out


def test_a_claim_of_speaker_independence_is_checked(planted, tmp_path, monkeypatch):
    from exhubert_jax.data.audit import command

    corpora = command.open_all(["alpha"], planted[0])
    monkeypatch.setitem(corpora["alpha"].record, "summary", {"speaker_independent": True,
                                                             "test_speakers_disjoint": True})
    doc, _ = command.audit(corpora, planted[0])
    assert doc["speakers"]["alpha"]["verdict"] == "contradicted" and doc["summary"]["speaker_claims_contradicted"]


def strip_digests(data: Path, name: str) -> None:
    """Make a prepared corpus look prepared before PCM digests (and source rates) were recorded."""
    meta_path = next((data / name).glob("*/metadata.json"))
    meta = json.loads(meta_path.read_text())
    for ix in meta["index"].values():
        ix.pop("pcm_hash"), ix.pop("source_rate")
    meta_path.write_text(json.dumps(meta))
    record = json.loads((data / name / "info.json").read_text())
    record["files"][meta_path.name] = meta_path.stat().st_size
    (data / name / "info.json").write_text(json.dumps(record))


@pytest.fixture
def copied(planted, tmp_path):
    import shutil

    shutil.copytree(planted[0], tmp_path / "data")
    return tmp_path / "data"


def test_a_corpus_without_digests_is_still_audited(copied, tmp_path, capsys):
    strip_digests(copied, "beta")
    assert open_prepared("beta", copied).split("test").pcm_hashes is None
    assert main(["--data-dir", str(copied), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["digests"] == {"alpha": "recorded", "beta": "computed (not in the index)"}
    assert {frozenset(Path(p[s]["path"]).stem for s in "ab") for p in doc["exact"]} == {
        frozenset({"p_exact", "s10_t0_e0"})}
    assert doc["stats"]["beta/test"]["source_rates"] == {"unknown": 9}


def test_train_precheck_warns_once_from_the_digests(copied):
    alpha = open_prepared("alpha", copied)
    line = leak_warning({"alpha": alpha.info["index"]}, copied)
    # alpha's own test files (p_8k is not identical: only exact copies are checked here) and beta's p_exact
    assert line.startswith("warning: 1 validation or test file(s)") and "\n" not in line
    assert f"python -m exhubert_jax.data.audit --data-dir {copied}" in line
    beta = open_prepared("beta", copied)
    assert leak_warning({"beta": beta.info["index"]}, copied) is None
    strip_digests(copied, "beta")
    line = leak_warning({"alpha": alpha.info["index"]}, copied)
    assert line.startswith("warning: beta not checked") and "python -m exhubert_jax.data.prepare rebuilds them" in line


def test_train_py_warns_in_one_line_and_the_demo_stays_silent(copied, tmp_path, monkeypatch, capsys):
    from exhubert_jax.cli import train as cli
    from exhubert_jax.data.demo.synthetic import prepare_demo
    from exhubert_jax.errors import ExhubertError
    from exhubert_jax.training import stages

    def stop(*args, **kwargs):
        raise ExhubertError("stopped before the model loads")

    monkeypatch.setattr(stages, "load_model", stop)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--data-dir", str(copied), "--corpora", "alpha", "--random-init"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [x for x in err if x.startswith("warning:")] == [(
        f"warning: 1 validation or test file(s) of the corpora prepared in {copied} are also in this run's training "
        f"data (identical audio); run `python -m exhubert_jax.data.audit --data-dir {copied}` to see which")]
    assert cli.main(["--data-dir", str(copied), "--stage", "transfer", "--corpus", "beta", "--random-init"]) == 2
    assert not [x for x in capsys.readouterr().err.splitlines() if x.startswith("warning:")]
    demo = tmp_path / "demo"
    prepare_demo(demo, n_per_class=1, n_speakers=3, log=lambda s: None)
    assert cli.main(["--data-dir", str(demo)]) == 2
    assert "warning" not in capsys.readouterr().err


def test_same_speaker_same_sentence_in_another_emotion_is_not_a_duplicate():
    """Generated: every speaker's texts in two emotions (other F0 level and rate) share no fingerprint; an
    identical rendering does."""
    renders = [(s, t, e, sentence(t, s, *scales)) for s in range(3) for t in range(3)
               for e, scales in enumerate(((1.0, 1.0), (1.3, 1.2), (0.85, 0.9)))]
    prints = [fingerprint(to_pcm16(x)) for *_, x in renders]
    assert near_duplicates(prints) == []
    again = near_duplicates(prints + [fingerprint(to_pcm16(sentence(1, 2, 1.3, 1.2)))])
    assert [(m.a, m.b) for m in again] == [(renders.index(next(r for r in renders if r[:3] == (2, 1, 1))),
                                            len(renders))]


@pytest.mark.skipif(not os.environ.get("EXHUBERT_EMODB"),
                    reason="set EXHUBERT_EMODB=/path/to/emodb-subset (EMO-DB wavs named like 03a01Fa.wav) to check "
                           "that the same speaker's same sentence in other emotions is not flagged on real speech")
def test_emodb_same_text_same_speaker_is_not_flagged(tmp_path, capsys):
    prepare_corpus("emodb", os.environ["EXHUBERT_EMODB"], tmp_path, **QUIET)
    assert main(["--data-dir", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    names = [Path(p).name for s in ("train", "validation", "test")
             for p in (f["path"] for f in open_prepared("emodb", tmp_path).split(s).utterance_fields())]
    same = {frozenset(p) for p in combinations(names, 2) if p[0][:5] == p[1][:5]}  # speaker + text
    flagged = {frozenset(Path(p[s]["path"]).name for s in "ab") for p in doc["exact"] + doc["near"]}
    assert len(names) == 243 and len(same) == 507
    assert not flagged & same and not flagged


def test_votes_counted_in_parts_give_what_one_count_gives():
    """The votes are counted a part (a set of first files) at a time, each part within its limit (plus one file's
    votes), and the pairs, their best offsets and votes are those of a single count."""
    sources = [sentence(t, s) for s in range(3) for t in range(4)]
    prints = [fingerprint(to_pcm16(x)) for x in sources + [COPIES["8k"](sources[1]), COPIES["trim"](sources[6])]]
    index = inverted_index(prints)
    one, parts = candidates(index, min_matches=2), candidates(index, min_matches=2, limit=40)
    assert one.parts == 1 and parts.parts > 3 and parts.counted == one.counted
    order = np.argsort(parts.pairs)
    for field in ("pairs", "votes", "offsets"):
        assert np.array_equal(getattr(one, field), getattr(parts, field)[order]), field
    per_file = np.bincount(index.files, weights=index.following)
    assert max(index.following[rows].sum() for rows in vote_parts(index, 40)) <= 40 + per_file.max()
    assert near_duplicates(prints, limit=40) == near_duplicates(prints)
    assert {(m.a, m.b) for m in near_duplicates(prints)} == {(1, 12), (6, 13)}


def test_stop_listed_hashes_do_not_dilute_a_copys_fraction():
    """A hash held more than MAX_POSTINGS times is skipped, and the fraction that agrees is of the hashes that are
    not: a copy whose 100 hashes are mostly common to many files is still found by its 10 rare ones."""
    hashes = np.arange(1000, 1100, dtype=np.uint32)
    times = np.arange(100, dtype=np.int32)
    rng = np.random.default_rng(0)
    common = [Fingerprint(hashes[:90], np.sort(rng.integers(0, 500, 90)).astype(np.int32))
              for _ in range(MAX_POSTINGS)]
    prints = [Fingerprint(hashes, times), Fingerprint(hashes, times + 5), *common]
    assert [(m.a, m.b, m.matches, m.fraction, m.offset_frames) for m in near_duplicates(prints)] == [(0, 1, 10, 1.0, 5)]
    assert inverted_index(prints).indexed.tolist() == [10, 10] + [0] * MAX_POSTINGS
