"""Registry of the 37 EmoSet++ corpora, the 6 unseen test corpora, the synthetic demo corpora, and the folder
names EmoNet's corpus layout uses for them."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from exhubert_jax.data.errors import DataError, UnknownCorpusError

MANIFEST = "manifest"
EMOBOX = "emobox"  # the reader of a fold prepared from EmoBox's metadata
_FOLD = re.compile(r"^(?P<base>.+?)-(?:emobox-)?fold\d+(?:of\d+)?$")
_EMOSET = "listed in EmoSet (Gerczuk et al., EmoNet, IEEE Trans. Affective Computing 14(2), 2023)"
_UNVERIFIED = _EMOSET + "; primary reference not verified here"
_ASK = "licensed by its distributor; download it yourself and follow its terms"
NO_SOURCE = "no public download: manifest or EmoNet layout"


@dataclass(frozen=True)
class Corpus:
    """One corpus: what it is, where it comes from, and how it is read and split."""

    name: str
    title: str
    group: str  # "emoset++", "unseen", "demo" or "user"
    language: str
    citation: str
    licence: str
    reader: str  # a reader registered with readers.reader (a key of READERS), or "manifest"
    split: str  # "own", "speaker", "random" or "auto" (own > speaker > random, from what the data provides)
    notes: str = ""

    @property
    def synthetic(self) -> bool:
        """True for the procedurally generated demo corpora (not speech)."""
        return self.group == "demo"


def _c(name, title, group, language, citation, licence, reader=MANIFEST, split="auto", notes=""):
    return Corpus(name, title, group, language, citation, licence, reader, split, notes)


_E, _U = "emoset++", "unseen"
CORPORA: dict[str, Corpus] = {c.name: c for c in [
    # --- EmoSet++ (37) ---
    _c("abc", "Airplane Behaviour Corpus", _E, "German",
       "Schuller et al., Audiovisual behavior modeling by combined feature spaces, ICASSP 2007", _ASK),
    _c("ad", "AD (Anger Detection; EmoNet folder AngerDetection)", _E, "unknown", _UNVERIFIED, NO_SOURCE),
    _c("bes", "BES (Burmese Emotional Speech)", _E, "Burmese", _UNVERIFIED, NO_SOURCE),
    _c("casia", "CASIA Chinese Emotional Speech Corpus", _E, "Mandarin",
       "Institute of Automation, Chinese Academy of Sciences (CASIA), 2005; " + _EMOSET,
       "distributed by the Chinese LDC under licence", "casia", "speaker",
       "4 speakers: 1 test, 1 validation, 2 train. 'Chang.Liu'-style folder names are aliased to 'liuchanhg' etc."),
    _c("cve", "Chinese Vocal Emotions", _E, "Mandarin",
       "Liu & Pell, Recognizing vocal emotions in Mandarin Chinese, Behavior Research Methods 44, 2012", _ASK),
    _c("crema-d", "CREMA-D", _E, "English",
       "Cao et al., CREMA-D: Crowd-sourced emotional multimodal actors dataset, IEEE Trans. Affective Computing 5(4), 2014",
       "Open Database License (ODbL) v1.0", "crema-d", "speaker",
       "91 actors. The original release contains an empty file (1076_MTI_SAD_XX.wav): it is reported and skipped."),
    _c("des", "Danish Emotional Speech", _E, "Danish",
       "Engberg & Hansen, Documentation of the Danish Emotional Speech Database, Aalborg University, 1996", _ASK),
    _c("demos", "DEMoS", _E, "Italian",
       "Parada-Cabaleiro et al., DEMoS: an Italian emotional speech corpus, Language Resources and Evaluation 54, 2020",
       "on request from the authors, research use", notes="Manifest labels: the file codes col, dis, gio, pau, rab, "
       "sor, tri, neu (own table section)."),
    _c("ea-act", "EA-ACT", _E, "unknown", _UNVERIFIED, NO_SOURCE),
    _c("ea-bmw", "EA-BMW", _E, "unknown", _UNVERIFIED, NO_SOURCE),
    _c("ea-wsj", "EA-WSJ", _E, "unknown", _UNVERIFIED, NO_SOURCE),
    _c("emodb", "Berlin Database of Emotional Speech (EMO-DB)", _E, "German",
       "Burkhardt et al., A database of German emotional speech, Interspeech 2005",
       "free for research from the authors' site", "emodb", "speaker",
       "10 actors. Beware third-party copies that call the letter F 'fear': F is Freude (happiness)."),
    _c("emofilm", "EmoFilm", _E, "English, Italian, Spanish",
       "Parada-Cabaleiro et al., EmoFilm: a multilingual emotional speech corpus, Interspeech 2018", _ASK),
    _c("emotiw-2014", "EmotiW 2014 (AFEW)", _E, "English",
       "Dhall et al., Emotion recognition in the wild challenge 2014, ICMI 2014", _ASK,
       notes="Audio must be extracted from the film clips (e.g. ffmpeg -i clip.avi -ac 1 -ar 16000 clip.wav)."),
    _c("emovo", "EMOVO", _E, "Italian",
       "Costantini et al., EMOVO corpus: an Italian emotional speech database, LREC 2014",
       "free for research from the authors", "emovo", "speaker"),
    _c("enterface", "eNTERFACE'05", _E, "English",
       "Martin et al., The eNTERFACE'05 audio-visual emotion database, ICDE Workshops 2006",
       "freely available for research", notes="Audio must be extracted from the videos first."),
    _c("esd", "Emotional Speech Dataset (ESD)", _E, "English, Mandarin",
       "Zhou et al., Seen and unseen emotional style transfer for voice conversion with a new emotional speech "
       "dataset, ICASSP 2021", "licence agreement with the authors (research use)", "esd", "speaker",
       "Its own train/evaluation/test folders split utterances, not speakers (every speaker is in every split), "
       "so the default is a speaker split; --split-method own gives the original one."),
    _c("eu-emoss", "EU-Emotion Stimulus Set", _E, "English",
       "O'Reilly et al., The EU-Emotion Stimulus Set, Behavior Research Methods 48, 2016", _ASK),
    _c("eu-ev", "EU-Emotion Voice Database", _E, "English, Hebrew, Swedish",
       "Lassalle et al., The EU-Emotion Voice Database, Behavior Research Methods 51, 2019", _ASK),
    _c("fau-aibo", "FAU Aibo Emotion Corpus", _E, "German (children)",
       "Steidl, Automatic classification of emotion-related user states in spontaneous children's speech, 2009; "
       "Schuller et al., The Interspeech 2009 Emotion Challenge", "licence from FAU Erlangen-Nuremberg",
       notes="Manifest labels: the 5-class letters A, E, N, P, R (own table section). Give the Ohm/Mont school "
       "split as split=train/test (validation carved from Ohm) to use the challenge's speaker-independent split."),
    _c("gemep", "GEMEP", _E, "French pseudo-language",
       "Bänziger, Mortillaro & Scherer, Introducing the Geneva Multimodal expression corpus, Emotion 12(5), 2012",
       "on request from the Swiss Center for Affective Sciences",
       notes="Manifest labels: GEMEP's emotion names (own table section, following its valence x arousal design)."),
    _c("gvess", "GVESS", _E, "unknown", _UNVERIFIED, NO_SOURCE),
    _c("iemocap", "IEMOCAP", _E, "English",
       "Busso et al., IEMOCAP: Interactive emotional dyadic motion capture database, LRE 42, 2008",
       "licence agreement with USC SAIL (research use)", "iemocap", "speaker",
       "Labels from the EmoEvaluation files (majority label); 'xxx' (no majority) and 'oth' are dropped by the "
       "table. Speaker = session + the turn's speaker letter (Ses01F, Ses01M, ...), 10 speakers."),
    _c("mes", "MES (Mandarin Emotional Speech)", _E, "Mandarin", _UNVERIFIED, NO_SOURCE),
    _c("mesd", "Mexican Emotional Speech Database (MESD)", _E, "Spanish (Mexico)",
       "Duville, Alonso-Valerdi & Ibarra-Zarate, Mexican emotional speech database..., Data 6(12), 2021",
       "CC BY 4.0 (Mendeley Data)", "mesd", "random",
       "File names give only a voice group (F/M/C = female/male/child), not speaker identities: random 10 %/10 %."),
    _c("meld", "MELD", _E, "English",
       "Poria et al., MELD: A multimodal multi-party dataset for emotion recognition in conversations, ACL 2019",
       "repository licence GPL-3.0; clips from the TV series Friends", "meld", "speaker",
       "Convert the mp4 clips to wav first (ffmpeg -i diaD_uttU.mp4 -ac 1 -ar 16000 diaD_uttU.wav, same folders). "
       "The official train/dev/test split shares speakers (the main characters), so the default is a speaker "
       "split; --split-method own gives the official one. Missing clips are reported and skipped."),
    _c("ppmmk", "PPMMK (EmoNet folder PPMK-EMO)", _E, "unknown", _UNVERIFIED, NO_SOURCE),
    _c("ravdess", "RAVDESS", _E, "English",
       "Livingstone & Russo, The Ryerson Audio-Visual Database of Emotional Speech and Song, PLoS ONE 13(5), 2018",
       "CC BY-NC-SA 4.0", "ravdess", "speaker",
       "24 actors. Reads every .wav found: point --source at Audio_Speech_Actors_01-24 for speech only."),
    _c("savee", "Surrey Audio-Visual Expressed Emotion (SAVEE)", _E, "English",
       "Haq & Jackson, Speaker-dependent audio-visual emotion recognition, AVSP 2009",
       "free for research after registration", "savee", "speaker", "4 speakers: 1 test, 1 validation, 2 train."),
    _c("shemo", "Sharif Emotional Speech Database (ShEMO)", _E, "Persian",
       "Mohamad Nezami, Jamshid Lou & Karami, ShEMO: a large-scale validated database for Persian speech emotion "
       "detection, LRE 53, 2019", _ASK, "shemo", "speaker"),
    _c("smartkom", "SmartKom", _E, "German",
       "Schiel, Steininger & Türk, The SmartKom multimodal corpus at BAS, LREC 2002", "licence from BAS Munich"),
    _c("simis", "SIMIS", _E, "unknown", _UNVERIFIED, NO_SOURCE),
    _c("susas", "Speech Under Simulated and Actual Stress (SUSAS)", _E, "English",
       "Hansen & Bou-Ghazale, Getting started with SUSAS, Eurospeech 1997", "LDC99S78 (LDC licence)",
       notes="Its labels are speaking styles and stress levels; the generic table has no rows for styles such as "
       "'lombard': write the manifest with class names, or add rows with --label-map FILE."),
    _c("subesco", "SUST Bangla Emotional Speech Corpus (SUBESCO)", _E, "Bangla",
       "Sultana et al., SUST Bangla Emotional Speech Corpus (SUBESCO), PLoS ONE 16(4), 2021",
       "CC BY 4.0 (Zenodo)", "subesco", "speaker"),
    _c("tess", "Toronto Emotional Speech Set (TESS)", _E, "English",
       "Pichora-Fuller & Dupuis, Toronto emotional speech set (TESS), Borealis, 2020", "CC BY-NC-ND 4.0",
       "tess", "random", "Only 2 speakers (OAF, YAF): no speaker-disjoint 3-way split exists, so random 10 %/10 %."),
    _c("turkishemo", "TurkishEmo (EmoNet folder TurkishEmoBUEE)", _E, "Turkish", _UNVERIFIED, NO_SOURCE),
    _c("urdu", "URDU", _E, "Urdu",
       "Latif et al., Cross lingual speech emotion recognition: Urdu vs. Western languages, FIT 2018", _ASK),
    # --- unseen test corpora (6) ---
    _c("aesi", "Athens Emotional States Inventory (AESI)", _U, "Greek",
       "Chaspari, Soldatos & Maragos, The development of the Athens Emotional States Inventory (AESI), "
       "World J. Biological Psychiatry 16(5), 2015", _ASK),
    _c("asvp-esd", "ASVP-ESD", _U, "several (films, TV, web)",
       "Landry, He & Xie, ASVP-ESD: a dataset and its benchmark for emotion recognition using both speech and "
       "non-speech utterances, 2020 (Zenodo)", "see its Zenodo record", "asvp-esd", "speaker",
       "Speaker = the file name's actor field (its folder number): clips come from films and the web, so an "
       "'actor' groups recordings the authors attributed to one person. Non-speech codes are in the table."),
    _c("jl-corpus", "JL-Corpus", _U, "English (New Zealand)",
       "James, Tian & Watson, An open source emotional speech corpus for human robot interaction applications, "
       "Interspeech 2018", "see its Kaggle/GitHub release", "jl-corpus", "speaker",
       "4 speakers; 5 primary and 5 secondary emotions, all mapped. Point --source at one copy of the wav files."),
    _c("mlend", "MLEnd Spoken Numerals", _U, "English (many accents)",
       "MLEnd datasets, Queen Mary University of London, https://mlenddatasets.github.io/spoken_numerals/",
       "see its release page", notes="Manifest labels: the intonations neutral, bored, excited, question."),
    _c("syntact", "SyntAct (synthesized database of basic emotions)", _U, "German",
       "Burkhardt et al., SyntAct: a synthesized database of basic emotions, DCLRL workshop at LREC 2022",
       "see its Zenodo record"),
    _c("vivae", "Variably Intense Vocalizations of Affect and Emotion (VIVAE)", _U, "non-verbal",
       "Holz, Larrouy-Maestri & Poeppel, The variably intense vocalizations of affect and emotion (VIVAE) corpus, "
       "Emotion 22(1), 2022", "see its Zenodo record", "vivae", "speaker",
       "Native label = the emotion (6 classes; intensity is metadata); reads full_set/ when present (core_set repeats it)."),
    # --- other corpora with a reader ---
    _c("msp-podcast", "MSP-Podcast", "other", "English",
       "Lotfian & Busso, Building naturalistic emotionally balanced speech corpus by retrieving emotional speech "
       "from existing podcast recordings, IEEE Trans. Affective Computing 10(4), 2019",
       "academic licence from UT Dallas (MSP lab)", "msp-podcast", "own",
       "Labels/labels_consensus.csv: EmoClass (consensus category; X, no agreement, and O, other, are dropped) and "
       "EmoAct/EmoVal/EmoDom (1-7, stored on [0, 1]); its own split Train / Development / Test1 (Test2 and later "
       "test sets are not read)."),
    # --- synthetic demo corpora ---
    *[_c(f"demo-{k}", f"Synthetic demo corpus {k.upper()} (procedurally generated, not speech)", "demo",
         "none (synthetic voiced sounds)", "exhubert_jax.data.demo.synthetic", "generated locally, no licence terms",
         notes=f"SYNTHETIC. {what} Made by exhubert_jax.data.demo.synthetic and read through its manifest.")
      for k, what in (("a", "16 kHz mono, clean."), ("b", "22.05 kHz (exercises resampling), lower voices."),
                      ("c", "16 kHz stereo (exercises mono mixing), noisy, other vowels."))],
]}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


# EmoNet's folder names (its training code and data layout) and the model card's spellings -> registry names.
ALIASES: dict[str, str] = {
    "AirplaneBehaviourCorpus": "abc", "AngerDetection": "ad", "BurmeseEmotionalSpeech": "bes", "CASIA": "casia",
    "ChineseVocalEmotions": "cve", "DanishEmotionalSpeech": "des", "DEMoS": "demos", "EA-ACT": "ea-act",
    "EA-BMW": "ea-bmw", "EA-WSJ": "ea-wsj", "EMO-DB": "emodb", "EmoFilm": "emofilm", "EmotiW-2014": "emotiw-2014",
    "ENTERFACE": "enterface", "EU-EmoSS": "eu-emoss", "EU-EmoVoice": "eu-ev", "FAU_AIBO": "fau-aibo",
    "GEMEP": "gemep", "GVESS": "gvess", "IEMOCAP-4cl": "iemocap", "MandarinEmotionalSpeech": "mes", "MELD": "meld",
    "PPMK-EMO": "ppmmk", "SIMIS": "simis", "SMARTKOM": "smartkom", "SUSAS": "susas", "TurkishEmoBUEE": "turkishemo",
}


def _by_key() -> dict[str, Corpus]:
    """Registry entries by name and alias key (built on each call, so an entry added to CORPORA is found)."""
    return {**{_key(n): c for n, c in CORPORA.items()}, **{_key(a): CORPORA[n] for a, n in ALIASES.items()}}


def corpus_names() -> list[str]:
    """Registry names, sorted."""
    return sorted(CORPORA)


def get_corpus(name: str) -> Corpus:
    """The registry entry for a name or an alias (case, '-' and '_' ignored: 'EMO-DB' finds 'emodb',
    'AngerDetection' finds 'ad')."""
    corpus = _by_key().get(_key(name))
    if corpus is None:
        raise UnknownCorpusError(name, corpus_names())
    return corpus


def user_corpus(name: str) -> Corpus:
    """An entry for a user's own corpus, read through a manifest and the generic label vocabulary."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name):
        raise DataError(f"corpus name {name!r}: use letters, digits, '.', '_' and '-' (it names a folder)")
    return _c(name, name, "user", "unknown", "user-supplied", "user-supplied")


def fold_name(corpus: str, fold: int, of: int | None = None) -> str:
    """The prepared name of one fold: 'emodb-fold2of5' (k-fold, folds counted from 1) or 'emodb-emobox-fold2'."""
    return f"{corpus}-fold{fold}of{of}" if of is not None else f"{corpus}-emobox-fold{fold}"


def base_name(name: str) -> str:
    """The corpus a prepared fold belongs to ('emodb-fold2of5' -> 'emodb'); other names unchanged."""
    m = _FOLD.match(name)
    return m["base"] if m else name


def fold_entry(entry: Corpus, name: str, reader: str | None = None, how: str = "") -> Corpus:
    """The registry entry of one fold of a corpus: the corpus's group and labels under the fold's name."""
    return replace(entry, name=name, reader=reader or entry.reader, title=f"{entry.title}, {how or name}")
