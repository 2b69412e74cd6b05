"""AudioSet segment CSVs and ontology, on snippets in the exact release formats."""

from __future__ import annotations

import json

import pytest

from avssl.data.audioset import Ontology, Segment, read_segments
from avssl.errors import ManifestError

SEGMENTS = """\
# Segments csv created Sun Mar  5 10:54:31 2017
# num_ytids=22160, num_segs=22160, num_unique_labels=527, num_positive_labels=52882
# YTID, start_seconds, end_seconds, positive_labels
--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"
--ZhevVpy1s, 50.000, 60.000, "/m/012xff"
--aE2O5G5WE, 0.000, 10.000, "/m/03fwl,/m/04rlf,/m/09x0r"
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_read_segments(tmp_path):
    segs = read_segments(write(tmp_path, "balanced_train_segments.csv", SEGMENTS))
    assert segs[0] == Segment("--PJHxphWEs", 30.0, 40.0, ["/m/09x0r", "/t/dd00088"])
    assert segs[1].labels == ["/m/012xff"]
    assert [s.ytid for s in segs] == ["--PJHxphWEs", "--ZhevVpy1s", "--aE2O5G5WE"]
    assert segs[2].labels == ["/m/03fwl", "/m/04rlf", "/m/09x0r"] and segs[2].start == 0.0


@pytest.mark.parametrize(
    "line,reason",
    [
        ('--PJHxphWEs, 30.000, "/m/09x0r"', "expected 4 fields"),
        ('--PJHxphWEs, thirty, 40.000, "/m/09x0r"', "start/end are not numbers"),
        ('--PJHxphWEs, 40.000, 30.000, "/m/09x0r"', "bad segment times"),
        (', 30.000, 40.000, "/m/09x0r"', "empty YouTube id"),
        ('--PJHxphWEs, nan, 40.000, "/m/09x0r"', "bad segment times"),
        ('--PJHxphWEs, 30.000, inf, "/m/09x0r"', "bad segment times"),
        ('--PJHxphWEs, -3, 40.000, "/m/09x0r"', "bad segment times"),
    ],
)
def test_malformed_segment_names_file_and_line(tmp_path, line, reason):
    path = write(tmp_path, "eval_segments.csv", SEGMENTS + line + "\n")
    with pytest.raises(ManifestError, match=rf"eval_segments.csv:7: {reason}"):
        read_segments(path)


def test_a_tab_before_the_labels_leaves_no_quotes(tmp_path):
    path = write(tmp_path, "t.csv", '--PJHxphWEs,30.000,40.000,\t"/m/09x0r, /t/dd00088"\n')
    assert read_segments(path)[0].labels == ["/m/09x0r", "/t/dd00088"]


def test_missing_segment_file(tmp_path):
    with pytest.raises(ManifestError, match="no such segment file"):
        read_segments(tmp_path / "nope.csv")


def node(id_, name, children=(), restrictions=()):
    return {
        "id": id_,
        "name": name,
        "description": f"Sounds of {name.lower()}.",
        "citation_uri": "",
        "positive_examples": ["youtu.be/--PJHxphWEs?start=30&end=40"],
        "child_ids": list(children),
        "restrictions": list(restrictions),
    }


# Human sounds > Human voice > Speech > {Male, Female} speech; Animal > Domestic > Dog > Bark;
# "Growling" has two parents (Dog and Wild animals); Music is a separate, childless root.
ONTOLOGY = [
    node("/m/0dgw9r", "Human sounds", ["/m/09l8g"], ["abstract"]),
    node("/m/09l8g", "Human voice", ["/m/09x0r"]),
    node("/m/09x0r", "Speech", ["/m/05zppz", "/m/02zsn"]),
    node("/m/05zppz", "Male speech, man speaking"),
    node("/m/02zsn", "Female speech, woman speaking"),
    node("/m/0jbk", "Animal", ["/m/068hy", "/m/01280g"]),
    node("/m/068hy", "Domestic animals, pets", ["/m/0bt9lr"]),
    node("/m/0bt9lr", "Dog", ["/m/05tny_", "/m/0ghcn6"]),
    node("/m/05tny_", "Bark"),
    node("/m/01280g", "Wild animals", ["/m/0ghcn6"]),
    node("/m/0ghcn6", "Growling", restrictions=["blacklist"]),
    node("/m/04rlf", "Music"),
]


@pytest.fixture
def onto(tmp_path):
    return Ontology.load(write(tmp_path, "ontology.json", json.dumps(ONTOLOGY, indent=1)))


def test_structure(onto):
    assert len(onto) == 12 and "/m/09x0r" in onto and "/m/zzz" not in onto
    assert onto.name("/m/09x0r") == "Speech"
    assert onto.children("/m/09x0r") == ["/m/05zppz", "/m/02zsn"]
    assert onto.parents("/m/0ghcn6") == ["/m/0bt9lr", "/m/01280g"]
    assert onto.parents("/m/0dgw9r") == []
    assert onto.roots() == ["/m/0dgw9r", "/m/0jbk", "/m/04rlf"]
    assert onto.ancestors("/m/0ghcn6") == {"/m/0bt9lr", "/m/068hy", "/m/01280g", "/m/0jbk"}
    assert onto.ancestors("/m/04rlf") == set()


def test_depth_takes_the_shortest_way_up(onto):
    assert onto.depth("/m/0dgw9r") == 0 and onto.depth("/m/05zppz") == 3
    assert onto.depth("/m/05tny_") == 3
    assert onto.depth("/m/0ghcn6") == 2  # via Wild animals, not via Dog (3)


def test_tree_distance(onto):
    d = onto.tree_distance
    assert d("/m/09x0r", "/m/09x0r") == 0
    assert d("/m/09x0r", "/m/05zppz") == d("/m/05zppz", "/m/09x0r") == 1
    assert d("/m/05zppz", "/m/02zsn") == 2  # siblings
    assert d("/m/05zppz", "/m/0dgw9r") == 3
    assert d("/m/05tny_", "/m/0ghcn6") == 2  # through Dog, the nearer of the common ancestors
    assert d("/m/01280g", "/m/05tny_") == 4  # up to Animal and down through Domestic and Dog
    assert d("/m/05zppz", "/m/05tny_") == 3 + 3 + 2  # different roots: via the virtual root
    assert d("/m/04rlf", "/m/0jbk") == 2
    assert onto.min_distance(["/m/04rlf", "/m/05zppz"], ["/m/02zsn"]) == 2


def test_tree_distance_through_the_virtual_root_when_it_is_nearer(tmp_path):
    # "a" is under T1 (depth 1) and deep under T2 (via L, M, N); "b" is under T2 only. Their
    # only real common ancestor, T2, is 4 + 1 edges away; the virtual root 1 + 1 + 2.
    nodes = [
        node("T1", "Top 1", ["a"]),
        node("T2", "Top 2", ["L", "b"]),
        node("L", "L", ["M"]),
        node("M", "M", ["N"]),
        node("N", "N", ["a"]),
        node("a", "A"),
        node("b", "B"),
    ]
    onto = Ontology.load(write(tmp_path, "ontology.json", json.dumps(nodes)))
    assert onto.ancestors("a") & onto.ancestors("b") == {"T2"}
    assert onto.tree_distance("a", "b") == onto.tree_distance("b", "a") == 4
    assert onto.tree_distance("N", "b") == 4  # via T2 (3 + 1), not the virtual root (3 + 1 + 2)
    assert onto.tree_distance("a", "T2") == 3  # a > T1 > root > T2, not 4 edges up to T2
    assert onto.min_distance(["a"], ["b", "L"]) == 3  # L is an ancestor of a, 3 edges up


def test_restrictions(onto):
    assert onto.is_restricted("/m/0dgw9r") and onto.is_restricted("/m/0dgw9r", "abstract")
    assert not onto.is_restricted("/m/0dgw9r", "blacklist")
    assert onto.is_restricted("/m/0ghcn6", "blacklist") and not onto.is_restricted("/m/09x0r")


def test_unknown_id(onto):
    with pytest.raises(KeyError, match="unknown ontology id"):
        onto.tree_distance("/m/09x0r", "/m/zzz")


@pytest.mark.parametrize(
    "text,reason",
    [
        ("[{", "ontology.json:1: not JSON"),
        ('{"id": "/m/x"}', "expected a JSON list"),
        ('[{"name": "Speech"}]', "entry 0 has no 'id'"),
        ('[{"id": "/m/x", "name": "X", "child_ids": ["/m/y"]}]', "unknown child '/m/y'"),
        ('[{"id": ["/m/x"], "name": "X"}]', "entry 0: 'id' must be a string"),
        ('[{"id": "/m/x", "name": "X", "child_ids": 5}]', "lists of strings"),
        ('[{"id": "/m/x", "name": "X", "child_ids": [["/m/y"]]}]', "lists of strings"),
        ('[{"id": "/m/x", "name": "X", "restrictions": "blacklist"}]', "lists of strings"),
        (
            '[{"id": "a", "name": "A", "child_ids": ["b"]}, {"id": "b", "name": "B", '
            '"child_ids": ["a"]}]',
            "its own ancestor",
        ),
        ('[{"id": "a", "name": "A", "child_ids": ["a"]}]', "a is its own ancestor"),
    ],
)
def test_bad_ontology(tmp_path, text, reason):
    with pytest.raises(ManifestError, match=reason):
        Ontology.load(write(tmp_path, "ontology.json", text))
