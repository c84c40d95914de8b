"""Label space, mapping-table coverage and reasons, and the corpus registry."""

import re

import pytest

from exhubert_jax.data.errors import DataError, UnknownCorpusError, UnknownLabelError
from exhubert_jax.data.sources import labels as L
from exhubert_jax.data.sources.corpora import CORPORA, MANIFEST, corpus_names, get_corpus, user_corpus
from exhubert_jax.data.sources.readers import READERS

EMOSET = ("ABC, AD, BES, CASIA, CVE, Crema-D, DES, DEMoS, EA-ACT, EA-BMW, EA-WSJ, EMO-DB, EmoFilm, EmotiW-2014, "
          "EMOVO, eNTERFACE, ESD, EU-EmoSS, EU-EV, FAU Aibo, GEMEP, GVESS, IEMOCAP, MES, MESD, MELD, PPMMK, RAVDESS, "
          "SAVEE, ShEMO, SmartKom, SIMIS, SUSAS, SUBESCO, TESS, TurkishEmo, Urdu").split(", ")
UNSEEN = ["AESI", "ASVP-ESD", "JL-Corpus", "MLEnd", "SyntAct", "VIVAE"]

def label_disagreements(table):
    """{corpus: (declared labels without a row, rows its reader does not declare)} over the registry corpora
    with a reader; a corpus with a reader needs a section of its own, holding exactly its reader's labels."""
    out = {}
    for c in CORPORA.values():
        if c.reader in READERS:
            declared = READERS[c.reader].labels
            rows = {r.label for r in table.rules(c.name)} if table.section(c.name) == c.name else set()
            if rows != declared:
                out[c.name] = (sorted(declared - rows), sorted(rows - declared))
    return out


@pytest.fixture(scope="module")
def table():
    return L.load_label_table()


def test_classes_follow_the_output_order():
    assert L.CLASSES == ("low_negative", "low_neutral", "low_positive", "high_negative", "high_neutral",
                         "high_positive")
    assert [L.class_index(c) for c in L.CLASSES] == list(range(6))
    with pytest.raises(DataError, match="unknown class 'joy'"):
        L.class_index("joy")


def test_every_reader_corpus_is_covered_exactly(table):
    assert {c.reader for c in CORPORA.values() if c.reader in READERS} == set(READERS)
    assert label_disagreements(table) == {}


def test_a_disagreement_between_reader_and_table_is_found(table):
    rows = [r for s in table.sections() for r in table.rules(s)]
    fewer = L.LabelTable([r for r in rows if (r.corpus, r.label) != ("savee", "su")])
    assert label_disagreements(fewer) == {"savee": (["su"], [])}
    more = table.merged([L.LabelRule("emodb", "Z", "zany", "high_positive", "a row no reader declares")])
    assert label_disagreements(more) == {"emodb": ([], ["Z"])}
    without = L.LabelTable([r for r in rows if r.corpus != "tess"])
    assert label_disagreements(without)["tess"][0] == sorted(READERS["tess"].labels)  # generic rows do not count


def test_every_row_has_a_class_and_a_reason(table):
    for section in table.sections():
        for rule in table.rules(section):
            assert rule.target in L.CLASSES + (L.DROP,)
            assert len(rule.reason) > 10, (section, rule.label)


@pytest.mark.parametrize("corpus,label,target,word", [
    ("emodb", "F", "high_positive", "Freude"),
    ("emodb", "L", "low_negative", "bored"),
    ("emodb", "E", "low_negative", "disgust"),
    ("ravdess", "02", "low_positive", "calm"),
    ("ravdess", "08", "high_neutral", "surprise"),
    ("tess", "ps", "high_positive", "pleasant surprise"),
    ("asvp-esd", "01", "low_negative", "sigh"),
    ("asvp-esd", "03", "high_positive", "laugh"),
    ("asvp-esd", "07", "low_negative", "contempt"),
    ("asvp-esd", "11", "high_negative", "pain"),
    ("asvp-esd", "13", "drop", "breath"),
    ("jl-corpus", "assertive", "high_neutral", "secondary"),
    ("jl-corpus", "apologetic", "low_negative", "secondary"),
    ("vivae", "pain", "high_negative", "intensity"),
    ("vivae", "pleasure", "high_positive", "intensity"),
    ("vivae", "surprise", "high_positive", "positive surprise"),
    ("iemocap", "xxx", "drop", "majority"),
    ("iemocap", "fru", "high_negative", "frustrat"),
    ("gemep", "irritation", "low_negative", "GEMEP"),
    ("*", "contempt", "low_negative", "contempt"),
    ("*", "calm", "low_positive", "calm"),
    ("*", "boredom", "low_negative", "bored"),
    ("*", "surprise", "high_neutral", "surprise"),
])
def test_non_obvious_choices(table, corpus, label, target, word):
    rule = table.lookup(corpus, label)
    assert rule.target == target
    assert word.lower() in (rule.reason + rule.meaning).lower()


# The debated labels: (corpus, label) -> (class, whether the reason must say the evidence is split)
REVIEWED = {
    ("tess", "ps"): ("high_positive", False), ("jl-corpus", "encouraging"): ("high_positive", True),
    ("jl-corpus", "assertive"): ("high_neutral", True), ("fau-aibo", "E"): ("high_neutral", True),
    ("fau-aibo", "P"): ("low_positive", True), ("mlend", "question"): ("high_neutral", True),
    ("ravdess", "02"): ("low_positive", True), ("*", "calm"): ("low_positive", True),
    ("asvp-esd", "02"): ("low_neutral", True), ("emodb", "L"): ("low_negative", False),
    ("*", "boredom"): ("low_negative", False), ("mlend", "bored"): ("low_negative", False),
    ("emodb", "E"): ("low_negative", True),
}


@pytest.mark.parametrize("key", sorted(REVIEWED))
def test_reviewed_labels_decision_and_evidence(table, key):
    target, contested = REVIEWED[key]
    rule = table.lookup(*key)
    assert rule.target == target
    assert ("contested" in rule.reason) == contested, rule.reason
    if "bored" in rule.reason:
        assert "Russell (1980) places bored on the unpleasant side" in rule.reason


def test_every_reason_cites_meaning_and_placement(table):
    for section in table.sections():
        for rule in table.rules(section):
            meaning, sep, placement = rule.reason.partition("; placement: ")
            assert meaning.startswith("meaning: ") and sep, (section, rule.label, rule.reason)
            if section not in (L.GENERIC, "mlend"):  # a corpus section names its publication, with the year
                assert re.search(r"\b(19|20)\d\d\b", meaning), (section, rule.label)
            assert ("Russell (1980)" in placement or "Russell 1980" in placement
                    or "by design" in placement or rule.target == L.DROP or rule.target == rule.label), \
                (section, rule.label, placement)
            assert "§" not in rule.reason  # reasons stand on their own, with no pointers to other notes


def test_corpus_sections_fall_back_to_generic_words(table):
    assert table.lookup("emodb", "W").corpus == "emodb"
    spelled = table.lookup("emodb", "anger")  # how EmoNet's lists spell EMO-DB's W
    assert (spelled.corpus, spelled.target) == (L.GENERIC, "high_negative")
    assert table.lookup("gemep", "anxiety").target == "low_negative"  # the section wins over the generic row
    with pytest.raises(UnknownLabelError, match="emodb: x.wav: unknown label 'grumpy'"):
        table.lookup("emodb", "grumpy", "x.wav")


def test_unknown_label_names_corpus_file_and_label(table):
    with pytest.raises(UnknownLabelError) as err:
        table.lookup("emodb", "X", "/data/emodb/wav/03a01Xa.wav")
    msg = str(err.value)
    assert "emodb" in msg and "/data/emodb/wav/03a01Xa.wav" in msg and "'X'" in msg


def test_generic_section_for_manifest_corpora(table):
    assert table.section("des") == L.GENERIC
    assert table.lookup("des", "Angry").target == "high_negative"
    assert table.lookup("my-corpus", "pleasant_surprise").target == "high_positive"
    for c in L.CLASSES:
        assert table.lookup("my-corpus", c).target == c
    with pytest.raises(UnknownLabelError):
        table.lookup("my-corpus", "lombard")


@pytest.mark.parametrize("corpus, label, shown", [
    ("emodb", "W", "anger (W)"),             # a translated word: its gloss, with the code
    ("emovo", "rab", "anger (rab)"),
    ("emodb", "N", "neutral (N)"),
    ("jl-corpus", "angry", "angry"),         # the word is the label: the bracket is a note, not a translation
    ("fau-aibo", "A", "Anger (A)"),          # a list in brackets explains the word before it
    ("asvp-esd", "01", "boredom, sigh (01)"),
    ("esd", "Angry", "Angry"),               # the same word in another case: the label as the corpus spells it
])
def test_display_names_of_native_labels(table, corpus, label, shown):
    assert table.display_names(corpus, [label]) == [shown]


def test_display_names_keep_labels_the_table_lacks(table):
    assert table.display_names("emodb", ["W", "grumpy"]) == ["anger (W)", "grumpy"]


def test_fingerprint_changes_with_the_mapping(table, tmp_path):
    extra = tmp_path / "extra.csv"
    extra.write_text("corpus,label,meaning,class,reason\nemodb,W,anger,low_negative,a test override\n")
    changed = L.load_label_table(extra)
    assert changed.lookup("emodb", "W").target == "low_negative"
    assert changed.fingerprint("emodb") != table.fingerprint("emodb")
    assert changed.fingerprint("ravdess") == table.fingerprint("ravdess")


@pytest.mark.parametrize("row,problem", [
    ("emodb,W,anger,high_negative,", "needs a reason"),
    ("emodb,W,anger,angry,because", "neither one of"),
    ("emodb,W,anger,high_negative,because\nemodb,w,anger,high_negative,again", "duplicate"),
])
def test_bad_table_rows_name_the_line(tmp_path, row, problem):
    bad = tmp_path / "bad.csv"
    bad.write_text("corpus,label,meaning,class,reason\n" + row + "\n")
    with pytest.raises(DataError, match=rf"bad.csv:\d+: .*{problem}"):
        L.read_label_rows(bad)


def test_bad_table_header(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("corpus,label,class\n")
    with pytest.raises(DataError, match="missing column"):
        L.read_label_rows(bad)


def test_registry_has_every_emoset_and_unseen_corpus():
    emoset = {get_corpus(n).name for n in EMOSET}
    unseen = {get_corpus(n).name for n in UNSEEN}
    assert len(emoset) == 37 and len(unseen) == 6
    assert {c.name for c in CORPORA.values() if c.group == "emoset++"} == emoset
    assert {c.name for c in CORPORA.values() if c.group == "unseen"} == unseen


def test_registry_entries_are_complete():
    for c in CORPORA.values():
        assert c.title and c.language and c.citation and c.licence, c.name
        assert c.reader in READERS or c.reader == MANIFEST, c.name
        assert c.split in ("own", "speaker", "random", "auto"), c.name
    assert {c.reader for c in CORPORA.values()} - {MANIFEST} == set(READERS)
    demos = [c for c in CORPORA.values() if c.synthetic]
    assert [c.name for c in demos] == ["demo-a", "demo-b", "demo-c"]
    assert all("SYNTHETIC" in c.notes and "ynthetic" in c.title for c in demos)


def test_registry_lookup_and_errors():
    assert get_corpus("EMO-DB").name == "emodb" and get_corpus("Crema_D").name == "crema-d"
    with pytest.raises(UnknownCorpusError, match="known corpora: .*emodb"):
        get_corpus("nope")
    assert user_corpus("my-corpus").group == "user"
    with pytest.raises(DataError, match="names a folder"):
        user_corpus("../evil")
    assert corpus_names() == sorted(CORPORA)
