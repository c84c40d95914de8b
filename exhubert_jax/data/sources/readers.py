"""Readers: one small function per corpus layout, plus the generic manifest (CSV or JSONL)."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

from exhubert_jax.data.errors import DataError, LayoutError, ManifestError, MissingSourceError
from exhubert_jax.data.sources.dimensions import DIMENSIONS, SCALES, class_of, normalise, parse_value
from exhubert_jax.data.sources.soft_labels import COLUMN as DIST_COLUMN
from exhubert_jax.data.sources.soft_labels import NO_MAJORITY, Votes, parse_label_dist, vote_weight, votes_of

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3")
SPLITS = ("train", "validation", "test")
_SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
                  "val": "validation", "dev": "validation", "development": "validation", "evaluation": "validation",
                  "eval": "validation", "test": "test", "testing": "test"}


@dataclass(frozen=True, order=True)
class Utterance:
    """One audio file of a corpus: path, native label, speaker (None if unknown), own split (None if none), and
    where the label was read (a list file and row, for error messages; None when the file name gives it); its
    ratings, its annotators' votes over the native labels (soft_labels.py) and whether they reached a majority; the
    speaker's gender ('female', 'male', another value a manifest gives; None when unknown) and the language spoken
    (None: the corpus registry's language)."""

    path: str
    native_label: str
    speaker: str | None = None
    split: str | None = None
    origin: str | None = field(default=None, compare=False)
    dims: tuple | None = field(default=None, compare=False)  # (arousal, valence, dominance) on [0, 1] (dimensions.py)
    votes: tuple | None = field(default=None, compare=False)  # the annotators' ((native label, weight), ...)
    majority: bool = field(default=True, compare=False)  # False: the annotators reached no majority label
    gender: str | None = field(default=None, compare=False)
    language: str | None = field(default=None, compare=False)


Read = Callable[[str | Path], list[Utterance]]


@dataclass(frozen=True)
class Reader:
    """A corpus reader as registered by @reader: its name (the registry's `reader` key), the native labels it can
    produce (the corpus's documentation; its rows of label_map.csv must be exactly these), and its version."""

    name: str
    read: Read
    labels: frozenset[str]
    version: int  # bump when a change to the function, or a helper or table it uses, changes what it returns

    @property
    def layout(self) -> str:
        """The folder layout it reads: the reading function's docstring, on one line."""
        return " ".join((self.read.__doc__ or "").split())

    def __call__(self, root: str | Path) -> list[Utterance]:
        return self.read(root)


READERS: dict[str, Reader] = {}  # filled by @reader, in the order of this file


def reader(name: str, *, labels: Iterable[str], version: int) -> Callable[[Read], Read]:
    """Register the decorated function as the reader `name`, with its native labels and version (see Reader)."""
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"reader {name!r}: version must be a positive integer, got {version!r}")
    declared = frozenset(labels)

    def register(read: Read) -> Read:
        if not declared:
            raise ValueError(f"reader {name!r} declares no native labels")
        if name in READERS:
            raise ValueError(f"reader {name!r} is registered twice")
        READERS[name] = Reader(name, read, declared, version)
        return read

    return register


def normalize_split(name: str) -> str | None:
    """'train' / 'validation' / 'test' for a split name or one of its usual aliases (dev, evaluation, ...)."""
    return _SPLIT_ALIASES.get(name.strip().lower())


def audio_files(root: Path, exts: Iterable[str] = (".wav",)) -> list[Path]:
    """Sorted audio files under root, skipping hidden files and macOS '__MACOSX' debris."""
    exts = tuple(e.lower() for e in exts)
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in exts and p.is_file()
                  and not any(part.startswith(".") or part == "__MACOSX" for part in p.relative_to(root).parts))


def _require_dir(root: str | Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise MissingSourceError(str(root))
    return root


def _finish(corpus: str, root: Path, utts: list[Utterance]) -> list[Utterance]:
    """Sort, and refuse an empty result or one utterance twice (same name, label and speaker: two copies of a
    corpus in one tree)."""
    if not utts:
        raise LayoutError(corpus, str(root), "no audio files in the expected layout were found")
    seen: dict[tuple, str] = {}
    for u in utts:
        key = (Path(u.path).stem, u.native_label, u.speaker)
        if key in seen:
            raise LayoutError(corpus, u.path, f"the same utterance also lies at {seen[key]}; "
                              "point --source at one copy of the corpus")
        seen[key] = u.path
    return sorted(utts)


_GENDERS = {"f": "female", "female": "female", "woman": "female", "m": "male", "male": "male", "man": "male"}
_NO_GENDER = ("", "unknown", "none", "n/a", "na", "?", "-")


def normalize_gender(value) -> str | None:
    """'female' or 'male' for F/M/female/male/woman/man in any case; None for an empty or unknown value; any other
    given value lower-cased (a manifest may use its own categories)."""
    text = " ".join(str(value if value is not None else "").split()).lower()
    return None if text in _NO_GENDER else _GENDERS.get(text, text)


Fields = Callable[[re.Match, Path], tuple[str, str | None, str | None]]
Attribute = Callable[[re.Match, Path], str | None]  # a file's speaker gender or language, from its name match


def _by_name(corpus: str, root: str | Path, pattern: str, fields: Fields, files: list[Path] | None = None,
             flags: int = 0, gender: Attribute | None = None, language: Attribute | None = None) -> list[Utterance]:
    """Utterances whose label/speaker/split (and, where the corpus documents them, the speaker's gender and the
    language) come from file names; a non-matching name is an error."""
    root = _require_dir(root)
    regex = re.compile(pattern, flags)
    utts = []
    for path in audio_files(root) if files is None else files:
        m = regex.match(path.stem)
        if m is None:
            raise LayoutError(corpus, str(path), f"file name does not follow the {corpus} convention {pattern}")
        label, speaker, split = fields(m, path)
        utts.append(Utterance(str(path), label, speaker, split, gender=normalize_gender(gender and gender(m, path)),
                              language=language and language(m, path)))
    return _finish(corpus, root, utts)


# EMO-DB's documented speakers (Burkhardt et al. 2005, the corpus's speaker table): number -> gender
_EMODB_GENDERS = {"03": "m", "08": "f", "09": "f", "10": "m", "11": "m", "12": "m", "13": "f", "14": "f", "15": "m",
                  "16": "f"}


# boredem: EmoBox's spelling of L in its published folds of EMO-DB (the emobox reader gives it)
@reader("emodb", labels=(*"WLEAFTN", "boredem"), version=1)
def read_emodb(root: str | Path) -> list[Utterance]:
    """EMO-DB: wav/SSTTTEV.wav (speaker, text, emotion letter, version); the speaker's gender from the corpus's
    speaker table."""
    return _by_name("emodb", root, r"^(\d\d)([a-b]\d\d)([A-Z])([a-z])$", lambda m, p: (m[3], m[1], None),
                    gender=lambda m, p: _EMODB_GENDERS.get(m[1]))


@reader("ravdess", labels=[f"{i:02d}" for i in range(1, 9)], version=1)
def read_ravdess(root: str | Path) -> list[Utterance]:
    """RAVDESS: Actor_XX/MM-VV-EE-II-SS-RR-AA.wav (emotion EE, actor AA: odd male, even female); speech and song
    alike."""
    return _by_name("ravdess", root, r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$",
                    lambda m, p: (m[3], m[7], None), gender=lambda m, p: "m" if int(m[7]) % 2 else "f")


def _annotation_rows(root: Path, name: str) -> tuple[Path | None, csv.DictReader | None]:
    """(path, CSV rows) of the first file called `name` under a corpus folder ((None, None) when it holds none),
    read through read_utf8: a file in another encoding is one line with the command that converts it."""
    found = sorted(root.rglob(name))
    if not found:
        return None, None
    text = read_utf8(found[0], lambda problem: ManifestError(str(found[0]), None, problem))
    return found[0], csv.DictReader(io.StringIO(text, newline=""))


_CREMA_VOTES = {"A": "ANG", "D": "DIS", "F": "FEA", "H": "HAP", "N": "NEU", "S": "SAD"}  # tabulatedVotes.csv columns


def _crema_votes(root: Path) -> dict[str, Votes | None]:
    """{clip name: votes} of processedResults/tabulatedVotes.csv when the corpus folder holds it ({} when not): the
    raters' counts A, D, F, H, N, S of the audio-only presentation, the rows whose id (the unnamed first column) is
    1xxxxx (2xxxxx rated the face alone, 3xxxxx face and voice)."""
    path, rows = _annotation_rows(root, "tabulatedVotes.csv")
    if rows is None:
        return {}
    out: dict[str, Votes | None] = {}
    columns = rows.fieldnames or []
    missing = [c for c in ("fileName", *_CREMA_VOTES) if c not in columns]
    if missing:
        raise ManifestError(str(path), 1, f"missing column(s) {', '.join(missing)}")
    for row in rows:
        line, ident = rows.line_num, str(row[columns[0]]).strip()
        if not ident.isdigit():
            raise ManifestError(str(path), line, f"row id {ident!r} is not a number (1xxxxx: audio-only ratings)")
        if int(ident) // 100000 != 1:
            continue
        name = str(row["fileName"]).strip()
        if name in out:
            raise ManifestError(str(path), line, f"{name} has a second audio-only row")
        out[name] = votes_of({label: vote_weight(row[c], f"count {c}", str(path), line)
                              for c, label in _CREMA_VOTES.items()})
    return out


def _crema_genders(root: Path) -> dict[str, str | None]:
    """{ActorID: gender} of VideoDemographics.csv's Sex column when the corpus folder holds it ({} when not)."""
    path, rows = _annotation_rows(root, "VideoDemographics.csv")
    if rows is None:
        return {}
    missing = [c for c in ("ActorID", "Sex") if c not in (rows.fieldnames or [])]
    if missing:
        raise ManifestError(str(path), 1, f"missing column(s) {', '.join(missing)}")
    return {str(row["ActorID"]).strip(): normalize_gender(row["Sex"]) for row in rows}


@reader("crema-d", labels=("ANG", "DIS", "FEA", "HAP", "NEU", "SAD"), version=2)
def read_crema_d(root: str | Path) -> list[Utterance]:
    """CREMA-D: AudioWAV/AAAA_SSS_EEE_LL.wav (actor, sentence, emotion, level); the raters' votes on the audio alone
    from processedResults/tabulatedVotes.csv and the actors' genders from VideoDemographics.csv (column Sex by
    ActorID) when they are there."""
    utts = _by_name("crema-d", root, r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$", lambda m, p: (m[3], m[1], None))
    votes, genders = _crema_votes(Path(root)), _crema_genders(Path(root))
    return [replace(u, votes=votes.get(Path(u.path).stem), gender=genders.get(u.speaker)) for u in utts]


@reader("tess", labels=("angry", "disgust", "fear", "happy", "neutral", "ps", "sad"), version=1)
def read_tess(root: str | Path) -> list[Utterance]:
    """TESS: [OAF|YAF]_word_emotion.wav, flat or in OAF_angry/-style folders; both speakers are women."""
    return _by_name("tess", root, r"^(OAF|YAF)_(.+)_([A-Za-z]+)$",
                    lambda m, p: (m[3].lower(), m[1].upper(), None), flags=re.IGNORECASE, gender=lambda m, p: "f")


_SAVEE_SPEAKERS = ("DC", "JE", "JK", "KL")


def _savee_fields(m: re.Match, path: Path) -> tuple[str, str | None, str | None]:
    speaker = m[1] or (path.parent.name if path.parent.name in _SAVEE_SPEAKERS else None)
    if speaker is None:
        raise LayoutError("savee", str(path), "speaker unknown: expected a DC/JE/JK/KL folder or prefix")
    return m[2], speaker, None


@reader("savee", labels=("a", "d", "f", "h", "n", "sa", "su"), version=1)
def read_savee(root: str | Path) -> list[Utterance]:
    """SAVEE: AudioData/{DC,JE,JK,KL}/{a,d,f,h,n,sa,su}NN.wav, or the flat DC_a01.wav variant; its 4 speakers are
    men."""
    return _by_name("savee", root, r"^(?:(DC|JE|JK|KL)_?)?(a|d|f|h|n|sa|su)(\d\d)$", _savee_fields,
                    gender=lambda m, p: "m")


@reader("emovo", labels=("dis", "gio", "neu", "pau", "rab", "sor", "tri"), version=1)
def read_emovo(root: str | Path) -> list[Utterance]:
    """EMOVO: {f1..m3}/emo-speaker-sentence.wav (e.g. dis-f1-b1.wav; the speaker's letter is the gender)."""
    return _by_name("emovo", root, r"^([a-z]{3})-([fm]\d)-(\w+)$", lambda m, p: (m[1], m[2], None),
                    gender=lambda m, p: m[2][0])


@reader("shemo", labels="AHNSWF", version=1)
def read_shemo(root: str | Path) -> list[Utterance]:
    """ShEMO: {female,male}/GSSENN.wav (gender+speaker, emotion letter, sentence)."""
    return _by_name("shemo", root, r"^([FM]\d\d)([A-Z])(\d\d)$", lambda m, p: (m[2], m[1], None),
                    gender=lambda m, p: m[1][0])


@reader("subesco", labels=("ANGRY", "DISGUST", "FEAR", "HAPPY", "NEUTRAL", "SAD", "SURPRISE"), version=1)
def read_subesco(root: str | Path) -> list[Utterance]:
    """SUBESCO: G_NN_NAME_S_K_EMOTION_R.wav (gender, speaker number, name, sentence, emotion, take)."""
    return _by_name("subesco", root, r"^([MF])_(\d+)_([A-Za-z]+)_S_(\d+)_([A-Z]+)_(\d+)$",
                    lambda m, p: (m[5], f"{m[1]}_{m[2]}", None), gender=lambda m, p: m[1])


def _esd_fields(m: re.Match, path: Path) -> tuple[str, str | None, str | None]:
    parts = path.parts
    if m[1] not in parts[:-2]:
        raise LayoutError("esd", str(path), f"expected the file inside {m[1]}/<Emotion>/")
    i = len(parts) - 1 - parts[::-1].index(m[1])
    split = normalize_split(parts[i + 2]) if i + 2 < len(parts) - 1 else None
    return parts[i + 1], m[1], split


# ESD's speakers as its README lists them: 0001-0010 speak Mandarin, 0011-0020 English; these are the women
_ESD_WOMEN = frozenset({"0001", "0002", "0003", "0007", "0009", "0015", "0016", "0017", "0018", "0019"})


def _esd_gender(m: re.Match, path: Path) -> str | None:
    """The gender of an ESD speaker 0001-0020 (None for a number outside the README's list)."""
    return ("f" if m[1] in _ESD_WOMEN else "m") if 1 <= int(m[1]) <= 20 else None


def _esd_language(m: re.Match, path: Path) -> str | None:
    """The language of an ESD speaker: Mandarin for 0001-0010, English for 0011-0020, else None (the registry's)."""
    n = int(m[1])
    return "Mandarin" if 1 <= n <= 10 else "English" if 11 <= n <= 20 else None


@reader("esd", labels=("Angry", "Happy", "Neutral", "Sad", "Surprise"), version=1)
def read_esd(root: str | Path) -> list[Utterance]:
    """ESD: SSSS/Emotion/[train|evaluation|test/]SSSS_NNNNNN.wav (its own split is per utterance); the speaker's
    gender and language from the corpus's README (0001-0010 Mandarin, 0011-0020 English)."""
    return _by_name("esd", root, r"^(\d{4})_(\d{6})$", _esd_fields, gender=_esd_gender, language=_esd_language)


_CASIA_ALIASES = {"Chang.Liu": "liuchanhg", "Zhe.Wang": "wangzhe", "Quanyin.Zhao": "zhaoquanyin",
                  "Zuoxiang.Zhao": "ZhaoZuoxiang"}


def _casia_fields(m: re.Match, path: Path) -> tuple[str, str | None, str | None]:
    speaker = path.parent.parent.name
    return path.parent.name, _CASIA_ALIASES.get(speaker, speaker), None


@reader("casia", labels=("angry", "fear", "happy", "neutral", "sad", "surprise"), version=1)
def read_casia(root: str | Path) -> list[Utterance]:
    """CASIA: speaker/emotion/NNN.wav (e.g. liuchanhg/angry/201.wav)."""
    root = _require_dir(root)
    files = audio_files(root)
    for p in files:
        if len(p.relative_to(root).parts) < 3:
            raise LayoutError("casia", str(p), "expected <speaker>/<emotion>/<file>.wav")
    return _by_name("casia", root, r"^(.+)$", _casia_fields, files)


@reader("mesd", labels=("Anger", "Disgust", "Fear", "Happiness", "Neutral", "Sadness"), version=1)
def read_mesd(root: str | Path) -> list[Utterance]:
    """MESD: Emotion_V_C_word.wav (V = F/M/C voice group, not a speaker identity: speaker unknown; F and M give the
    gender, C, a child's voice, none)."""
    return _by_name("mesd", root, r"^([A-Za-z]+)_([FMC])_([AB])_(.+)$", lambda m, p: (m[1], None, None),
                    gender=lambda m, p: {"F": "f", "M": "m"}.get(m[2]))


@reader("jl-corpus", labels=("angry", "sad", "neutral", "happy", "excited", "anxious", "apologetic", "assertive",
                           "concerned", "encouraging"), version=1)
def read_jl_corpus(root: str | Path) -> list[Utterance]:
    """JL-Corpus: speaker_emotion_NNx_S.wav (e.g. female1_angry_1a_1.wav; the speaker names the gender)."""
    return _by_name("jl-corpus", root, r"^((?:fe)?male[12])_([a-z]+)_(\d+[ab])_([12])$",
                    lambda m, p: (m[2], m[1], None), gender=lambda m, p: m[1][:-1])


@reader("asvp-esd", labels=[f"{i:02d}" for i in range(1, 14)], version=1)
def read_asvp_esd(root: str | Path) -> list[Utterance]:
    """ASVP-ESD: MM-VV-EE-II-SS-AA[-age-source-language[-...]].wav (emotion EE, actor AA)."""
    return _by_name("asvp-esd", root, r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d+)-(\d+)(?:-\d+)*$",
                    lambda m, p: (m[3], m[6], None))


@reader("vivae", labels=("achievement", "anger", "fear", "pain", "pleasure", "surprise"), version=1)  # not intensity
def read_vivae(root: str | Path) -> list[Utterance]:
    """VIVAE: [full_set/]SNN_emotion_intensity_NN.wav; the native label is the emotion (one of six), the intensity
    (low, moderate, strong, peak) grades it and is not a class (Holz et al. 2022)."""
    root = _require_dir(root)
    full = sorted(d for d in root.rglob("full_set") if d.is_dir())  # core_set repeats part of full_set
    files = audio_files(full[0]) if full else None
    return _by_name("vivae", root, r"^(S\d+)_([a-z]+)_([a-z]+)_(\d+)$",
                    lambda m, p: (m[2], m[1], None), files)


_IEMOCAP_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(Ses\d\d[FM]_\S+)\s+(\S+)\s+\[([^\]]*)\]")


def _iemocap_dims(text: str, where: str, line: int) -> tuple:
    """The '[V, A, D]' of an EmoEvaluation line (IEMOCAP's 1-5 ratings, valence first) on [0, 1]."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3:
        raise ManifestError(where, line, f"expected [valence, activation, dominance], got [{text}]")
    v, a, d = (parse_value(p, n, where, line) for p, n in zip(parts, ("valence", "activation", "dominance")))
    return normalise(dict(arousal=a, valence=v, dominance=d), SCALES["iemocap"], where, line)


_IEMOCAP_EVALUATOR = re.compile(r"^C-(E\d+):\s*(.*?)\s*(?:\(.*\))?\s*$")  # an external evaluator's categories
_IEMOCAP_WORDS = {"anger": "ang", "happiness": "hap", "excited": "exc", "sadness": "sad", "neutral": "neu",
                  "neutral state": "neu", "frustration": "fru", "surprise": "sur", "fear": "fea", "disgust": "dis",
                  "other": "oth"}


def _iemocap_votes(text: str, where: str, line: int) -> list[tuple[str, float]]:
    """One evaluator's categories ('Frustration; Anger;') as (native label, 1/k) each: k categories share the
    evaluator's one vote; 'Other' (with or without a description after it) is oth."""
    words = [w.strip() for w in text.split(";") if w.strip()]
    votes = []
    for word in words:
        key = " ".join(word.lower().split())
        label = "oth" if key.startswith("other") else _IEMOCAP_WORDS.get(key)
        if label is None:
            raise ManifestError(where, line, f"unknown category {word!r} of an evaluator (expected "
                                f"{', '.join(sorted({w.capitalize() for w in _IEMOCAP_WORDS}))})")
        votes.append((label, 1.0 / len(words)))
    return votes


@reader("iemocap", labels=("ang", "hap", "exc", "sad", "neu", "fru", "sur", "fea", "dis", "oth", "xxx"),
        version=2)
def read_iemocap(root: str | Path) -> list[Utterance]:
    """IEMOCAP: labels from SessionN/dialog/EmoEvaluation/*.txt, each turn's `[start - end] turn emotion [V, A, D]`
    line giving the majority label (xxx: none) and the mean valence, activation and dominance (1-5), and its
    external evaluators' `C-E1:` ... lines their categories; audio SessionN/sentences/wav/<dialog>/<utt>.wav. The
    turn's letter (F or M in Ses01F_impro01_M003) is its speaker's gender."""
    root = _require_dir(root)
    utts = []
    for txt in sorted(root.glob("Session*/dialog/EmoEvaluation/*.txt")):
        if txt.name.startswith("."):
            continue
        session, turns, votes = txt.parents[2], [], {}
        for number, line in enumerate(txt.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
            m = _IEMOCAP_LINE.match(line)
            if m:
                turns.append((m[1], m[2], number, _iemocap_dims(m[3], str(txt), number)))
                votes[m[1]] = []
                continue
            e = _IEMOCAP_EVALUATOR.match(line)
            if e and turns:  # self-evaluations (C-F1, C-M1) are not the evaluators' and are left out
                votes[turns[-1][0]] += _iemocap_votes(e[2], str(txt), number)
        for name, label, number, dims in turns:
            dialog, turn = name.rsplit("_", 1)
            wav = session / "sentences" / "wav" / dialog / f"{name}.wav"
            utts.append(Utterance(str(wav), label, name[:5] + turn[0], None, f"{txt}:{number}", dims,
                                  votes_of(votes[name]), label != "xxx", normalize_gender(turn[0])))
    return _finish("iemocap", root, utts)


_MSP_SPLITS = {"Train": "train", "Development": "validation", "Test1": "test"}  # Test2/Test3 are left out
_MSP_COLUMNS = {"arousal": "EmoAct", "valence": "EmoVal", "dominance": "EmoDom"}


_MSP_PRIMARY = {"angry": "A", "sad": "S", "happy": "H", "surprise": "U", "fear": "F", "disgust": "D", "contempt": "C",
                "neutral": "N", "other": "O"}  # an annotator's primary emotion in labels_detailed.csv, as EmoClass


def _msp_code(text: str, where: str, line: int) -> str:
    """An annotator's primary emotion as its EmoClass code: a word (Angry, ..., Neutral; Other or Other-<word> is O),
    or the code itself."""
    word = text.strip()
    key = word.lower()
    if len(word) == 1 and word in "ASHUFDCNO":
        return word
    if key.startswith("other"):
        return "O"
    if key not in _MSP_PRIMARY:
        raise ManifestError(where, line, f"unknown primary emotion {word!r} (expected "
                            f"{', '.join(w.capitalize() for w in _MSP_PRIMARY)}, or Other-<word>)")
    return _MSP_PRIMARY[key]


def _msp_votes(root: Path) -> dict[str, Votes | None]:
    """{FileName: votes} of Labels/labels_detailed.csv when the corpus folder holds it ({} when not): one vote per
    row, the annotator's primary emotion, from the column EmoDetail ('WORKER; Primary; secondary, ...; A:x; V:y;
    D:z;', the releases since 1.7) or EmoClass_Major (release 1.6)."""
    path, rows = _annotation_rows(root, "labels_detailed.csv")
    if rows is None:
        return {}
    counts: dict[str, list] = {}
    columns = rows.fieldnames or []
    field = next((c for c in ("EmoDetail", "EmoClass_Major") if c in columns), None)
    if "FileName" not in columns or field is None:
        raise ManifestError(str(path), 1, "missing column(s): expected FileName and EmoDetail (or EmoClass_Major)")
    for row in rows:
        line, text = rows.line_num, str(row[field] or "")
        parts = text.split(";")
        if field == "EmoDetail" and len(parts) < 2:
            raise ManifestError(str(path), line, f"EmoDetail {text!r} is not 'WORKER; Primary; ...'")
        code = _msp_code(parts[1] if field == "EmoDetail" else text, str(path), line)
        counts.setdefault(str(row["FileName"]).strip(), []).append((code, 1.0))
    return {name: votes_of(pairs) for name, pairs in counts.items()}


@reader("msp-podcast", labels="ASHUFDCNOX", version=2)  # EmoClass codes of labels_consensus.csv
def read_msp_podcast(root: str | Path) -> list[Utterance]:
    """MSP-Podcast: Labels/labels_consensus.csv (FileName, EmoClass, EmoAct, EmoVal, EmoDom on 1-7, SpkrID,
    Split_Set) with audio in Audios/; its own split: Train, Development (validation), Test1 (test). Test2 (and
    Test3 of later releases) are separate test sets and are not read. EmoClass X: no majority. The annotators'
    votes from Labels/labels_detailed.csv when it is there; the speaker's gender from its Gender column when it has
    one."""
    root = _require_dir(root)
    csvs = sorted(root.rglob("labels_consensus.csv"))
    if not csvs:
        raise LayoutError("msp-podcast", str(root / "Labels" / "labels_consensus.csv"), "label file not found")
    audio = {p.name: p for p in audio_files(root, AUDIO_EXTS)}
    votes = _msp_votes(root)
    utts = []
    with csvs[0].open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        need = ["FileName", "EmoClass", "SpkrID", "Split_Set", *_MSP_COLUMNS.values()]
        missing = [c for c in need if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(str(csvs[0]), 1, f"missing column(s) {', '.join(missing)}")
        for row in reader:
            line, split_set = reader.line_num, row["Split_Set"].strip()
            if split_set not in _MSP_SPLITS:
                if split_set.startswith("Test"):
                    continue
                raise ManifestError(str(csvs[0]), line, f"unknown Split_Set {split_set!r}")
            values = {k: parse_value(row[c], k, str(csvs[0]), line) for k, c in _MSP_COLUMNS.items()}
            name = row["FileName"].strip()
            speaker = row["SpkrID"].strip()
            path, label = audio.get(name, root / "Audios" / name), row["EmoClass"].strip()
            utts.append(Utterance(str(path), label, None if speaker in ("", "Unknown") else speaker,
                                  _MSP_SPLITS[split_set], f"{csvs[0]}:{line}",
                                  normalise(values, SCALES["msp-podcast"], str(csvs[0]), line), votes.get(name),
                                  label != "X", normalize_gender(row.get("Gender"))))
    if not utts:
        raise LayoutError("msp-podcast", str(csvs[0]), "the label file lists no Train/Development/Test1 utterances")
    return sorted(utts)


_MELD_CSV = {"train": "train_sent_emo.csv", "validation": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}
_MELD_DIRS = {"train": ("train_splits", "train"), "validation": ("dev_splits_complete", "dev_splits", "dev"),
              "test": ("output_repeated_splits_test", "test_splits", "test")}


@reader("meld", labels=("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"), version=1)
def read_meld(root: str | Path) -> list[Utterance]:
    """MELD: {train,dev,test}_sent_emo.csv + audio diaD_uttU.{wav,flac,...} in the split folders (own split)."""
    root = _require_dir(root)
    utts = []
    for split, csv_name in _MELD_CSV.items():
        csvs = sorted(root.rglob(csv_name))
        if not csvs:
            raise LayoutError("meld", str(root / csv_name), "MELD label file not found")
        dirs = sorted(d for d in root.rglob("*") if d.is_dir() and d.name in _MELD_DIRS[split])
        audio = {p.stem: p for d in reversed(dirs) for p in audio_files(d, AUDIO_EXTS)}
        fallback = (dirs[0] if dirs else root / _MELD_DIRS[split][0])
        with csvs[0].open(newline="", encoding="utf-8", errors="replace") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                try:
                    stem = f"dia{int(row['Dialogue_ID'])}_utt{int(row['Utterance_ID'])}"
                    label, speaker = row["Emotion"].strip(), row["Speaker"].strip() or None
                except (KeyError, ValueError, AttributeError) as e:
                    raise ManifestError(str(csvs[0]), line, f"bad MELD row ({e!r})") from None
                path = audio.get(stem, fallback / f"{stem}.wav")
                utts.append(Utterance(str(path), label, speaker, split))
    if not utts:
        raise LayoutError("meld", str(root), "the MELD label files list no utterances")
    return sorted(utts)


def read_utf8(path: Path, error: Callable[[str], DataError]) -> str:
    """The text of a UTF-8 file (a leading byte-order mark dropped); a file in another encoding raises
    error(problem), the problem naming the first bad byte and the command that converts the file."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise error(f"not UTF-8 text (byte {e.object[e.start]:#x} at offset {e.start}, as Latin-1 or another "
                    f"8-bit encoding writes it); save it as UTF-8, e.g. iconv -f latin1 -t utf-8 {path}") from None


def _manifest_rows(path: Path) -> Iterable[tuple[int, dict]]:
    """(line number, row dict) of a CSV/TSV or JSONL manifest."""
    text = read_utf8(path, lambda problem: ManifestError(str(path), None, problem))
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson") or text.lstrip().startswith("{"):
        for line, raw in enumerate(text.splitlines(), start=1):
            if raw.strip():
                try:
                    row = json.loads(raw)
                except json.JSONDecodeError as e:
                    raise ManifestError(str(path), line, f"not valid JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise ManifestError(str(path), line, "each line must be a JSON object")
                yield line, row
        return
    reader = csv.DictReader(text.splitlines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    columns = reader.fieldnames or []
    rated = {"arousal", "valence"} <= set(columns)  # a rated corpus may leave out the label (dimensions.class_of)
    unlabelled = rated or DIST_COLUMN in columns  # ... and so may one with label distributions (no majority)
    missing = [c for c in ("path", "label") if c not in columns and not (c == "label" and unlabelled)]
    if missing:
        raise ManifestError(str(path), 1, f"missing column(s) {', '.join(missing)}; expected a header with "
                            f"path,label[,speaker][,split][,gender][,language][,arousal,valence,dominance]"
                            f"[,{DIST_COLUMN}]")
    for row in reader:
        yield reader.line_num, row


def _manifest_dims(row: dict, where: str, line: int) -> tuple | None:
    """Optional arousal, valence, dominance columns of a manifest row, on [0, 1] (None: the row has none)."""
    values = {k: parse_value(row.get(k), k, where, line) for k in DIMENSIONS}
    if all(v is None for v in values.values()):
        return None
    return normalise(values, SCALES["manifest"], where, line)


MANIFEST_VERSION = 2  # bump when a change to read_manifest or its helpers changes the utterances it returns


def read_manifest(manifest: str | Path, root: str | Path | None = None) -> list[Utterance]:
    """Generic manifest (CSV/TSV/JSONL: path, label, optional speaker, optional split, optional gender (the
    speaker's: normalize_gender), optional language, optional arousal, valence, dominance on [0, 1], optional
    label_dist, the annotators' votes as label:weight pairs separated by ';'
    (soft_labels.py); a rated row without a label gets the class of its arousal and valence, so a dimensional
    corpus joins the 6-class round robin, and one with a label_dist but no label is a row without a majority);
    relative paths are resolved against root, or against the manifest's folder when root is None."""
    manifest = Path(manifest)
    if not manifest.is_file():
        raise MissingSourceError(str(manifest), "manifest")
    base = Path(root) if root is not None else manifest.parent
    utts, seen, with_split = [], {}, []
    for line, row in _manifest_rows(manifest):
        path, label = (str(row.get(k) or "").strip() for k in ("path", "label"))
        dims = _manifest_dims(row, str(manifest), line)
        votes = parse_label_dist(row.get(DIST_COLUMN), str(manifest), line)
        label = label or class_of(dims) or ""  # unlabelled but rated: the class of its arousal and valence
        majority = bool(label) or votes is None
        label = label or (NO_MAJORITY if votes else "")  # unlabelled with votes: no majority (kept on request)
        if not path or not label:
            raise ManifestError(str(manifest), line, "empty 'path' or 'label' (a row without a label needs "
                                f"arousal and valence, or a {DIST_COLUMN})")
        speaker = str(row.get("speaker") or "").strip() or None
        split_raw = str(row.get("split") or "").strip()
        split = normalize_split(split_raw) if split_raw else None
        if split_raw and split is None:
            raise ManifestError(str(manifest), line, f"unknown split {split_raw!r} (use train, validation or test)")
        full = str((base / path) if not Path(path).is_absolute() else Path(path))
        if full in seen:
            raise ManifestError(str(manifest), line, f"{path} is listed twice (first at line {seen[full]})")
        seen[full] = line
        with_split.append((line, split is not None))
        language = str(row.get("language") or "").strip() or None
        utts.append(Utterance(full, label, speaker, split, None, dims, votes, majority,
                              normalize_gender(row.get("gender")), language))
    if not utts:
        raise ManifestError(str(manifest), None, "no rows")
    if len({has for _, has in with_split}) > 1:
        first = next(line for line, has in with_split if not has)
        raise ManifestError(str(manifest), first, "a split is given for some rows but not for this one: "
                            "give it for every row or for none")
    return sorted(utts)

