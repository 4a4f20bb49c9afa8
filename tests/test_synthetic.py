"""data/synthetic.py and ``bga-mner synth``: a deterministic set where the image tells the type."""

from __future__ import annotations

import colorsys
import hashlib
import json
from collections import defaultdict
from pathlib import Path

import pytest
from PIL import Image

from bga_mner.cli import main as cli
from bga_mner.data.conll import read_split_dir
from bga_mner.data.detect import read_objects
from bga_mner.data.synthetic import (AMBIGUOUS, CATEGORIES, NAMES, TYPE_COLOURS, TYPE_OBJECTS,
                                     SynthConfig, digest, ensure_synthetic, entity_style, generate,
                                     name_pools)

SMALL = SynthConfig(train=120, valid=40, test=40, seed=3)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _generate_pinned(root: Path, cfg: SynthConfig, pins: dict[str, str]) -> dict[str, str]:
    """Generate ``cfg`` into ``root``, check the sha256 of the files ``pins`` names, and return
    every file's sha256."""
    generate(root, cfg)
    files = _digest(root)
    assert {k: files[k] for k in pins} == pins
    return files


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate(root, SMALL)
    return root


def test_same_seed_identical_files_other_seed_differs(small_set: Path, tmp_path: Path) -> None:
    generate(tmp_path / "again", SMALL)
    assert _digest(tmp_path / "again") == _digest(small_set)
    generate(tmp_path / "other", SynthConfig(train=120, valid=40, test=40, seed=4))
    other = _digest(tmp_path / "other")
    assert other["train.txt"] != _digest(small_set)["train.txt"]


def test_files_are_consistent(small_set: Path) -> None:
    splits = read_split_dir(small_set)
    assert {k: len(v) for k, v in splits.items()} == {"train": 120, "valid": 40, "test": 40}
    meta = json.loads((small_set / "meta.json").read_text())["tweets"]
    objects = read_objects(small_set / "objects.jsonl")
    images = {p.stem for p in (small_set / "images").iterdir()}
    ids = [t.image_id for tweets in splits.values() for t in tweets]
    assert len(set(ids)) == len(ids) == len(meta)
    with_image = {i for i in ids if meta[i]["has_image"]}
    assert images == with_image == set(objects)
    assert 0.03 < 1 - len(with_image) / len(ids) < 0.2  # ~10% without an image
    for image_id in list(with_image)[:20]:
        width, height = Image.open(small_set / "images" / f"{image_id}.jpg").size
        det = objects[image_id]
        assert det.scores == sorted(det.scores, reverse=True)
        assert all(CATEGORIES[label] == name for label, name in zip(det.labels, det.names))
        for x1, y1, x2, y2 in det.boxes:
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height


def test_entities_tags_objects_cues_and_ambiguity(small_set: Path) -> None:
    splits = read_split_dir(small_set)
    meta = json.loads((small_set / "meta.json").read_text())["tweets"]
    objects = read_objects(small_set / "objects.jsonl")
    types_of_name: dict[str, set[str]] = defaultdict(set)
    n_ambiguous = n_cues = 0
    for tweet in (t for tweets in splits.values() for t in tweets):
        m = meta[tweet.image_id]
        for e in m["entities"]:
            assert tweet.tags[e["start"]] == f"B-{e['type']}"
            assert " ".join(tweet.words[e["start"]:e["end"]]) == e["name"]
            assert e["object"] in TYPE_OBJECTS[e["type"]]
            if m["has_image"]:  # one object of the entity's kind is drawn and detected
                assert e["object"] in objects[tweet.image_id].names
            if e["ambiguous"]:
                types_of_name[e["name"]].add(e["type"])
        for pos in m["ambiguous_positions"]:
            assert tweet.tags[pos] != "O" and tweet.words[pos] in AMBIGUOUS
        n_ambiguous += bool(m["ambiguous_positions"])
        for cue in m["cue_words"]:
            assert tweet.words[cue["position"]] == cue["word"] and tweet.tags[cue["position"]] == "O"
            n_cues += 1
    assert n_ambiguous > 20 and n_cues > 20
    assert sum(len(types) > 1 for types in types_of_name.values()) >= 5  # same string, other types


def test_entity_colour_is_drawn_in_its_box(small_set: Path) -> None:
    meta = json.loads((small_set / "meta.json").read_text())["tweets"]
    objects = read_objects(small_set / "objects.jsonl")
    checked = 0
    for image_id, m in meta.items():
        if not m["has_image"] or len(m["entities"]) != 1:
            continue
        (entity,) = m["entities"]
        colour, _ = entity_style(entity["name"])
        det = objects[image_id]
        box = det.boxes[det.names.index(entity["object"])]
        pixels = Image.open(small_set / "images" / f"{image_id}.jpg").convert("RGB").crop(
            tuple(int(v) for v in box)).getdata()
        close = sum(max(abs(a - b) for a, b in zip(p, colour)) < 40 for p in pixels)
        assert close > 0.1 * len(pixels), (image_id, entity)
        checked += 1
        if checked == 15:
            break
    assert checked == 15
    assert entity_style("Jordan") == entity_style("Jordan")


def test_ensure_synthetic_generates_once(tmp_path: Path) -> None:
    cfg = SynthConfig(train=5, valid=3, test=3, seed=1)
    root = ensure_synthetic(tmp_path, cfg)
    assert root == tmp_path / f"synthetic-{digest(cfg)}" and (root / "meta.json").is_file()
    stamp = (root / "meta.json").stat().st_mtime_ns
    assert ensure_synthetic(tmp_path, cfg) == root
    assert (root / "meta.json").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [root.name]  # no temporary folder left
    assert digest(SynthConfig(train=6, valid=3, test=3, seed=1)) != digest(cfg)


def test_names_per_type_limits_the_names_drawn(tmp_path: Path) -> None:
    generate(tmp_path, SynthConfig(train=60, valid=2, test=2, seed=2, names_per_type=2))
    meta = json.loads((tmp_path / "meta.json").read_text())["tweets"]
    names = {e["name"]: e["ambiguous"] for t in meta.values() for e in t["entities"]}
    allowed = {n for t in NAMES.values() for n in t[:2]}
    assert {n for n, amb in names.items() if not amb} <= allowed
    assert {n for n, amb in names.items() if amb} <= set(sorted(AMBIGUOUS)[:2])
    assert len(names) > 4  # several types drawn, each from its first two names
    with pytest.raises(ValueError, match="names_per_type"):
        SynthConfig(names_per_type=0)


def test_synth_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli(["synth", str(tmp_path / "s"), "--train", "4", "--valid", "2", "--test", "2",
                "--seed", "5"]) == 0
    assert "4/2/2 train/valid/test" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "s").iterdir()} == {
        "train.txt", "valid.txt", "test.txt", "images", "objects.jsonl", "meta.json"}
    generate(tmp_path / "t", SynthConfig(train=4, valid=2, test=2, seed=5))
    assert _digest(tmp_path / "s") == _digest(tmp_path / "t")


# --- benchmark options (unseen names, image-told cues) and the default set kept byte-identical ---

# sha256 of SynthConfig(train=30, valid=10, test=10)'s files, computed with the generator BEFORE the
# benchmark options existed (GENERATOR_VERSION 1): the default parameters must keep this set.
ORIGINAL_SHA256 = {
    "train.txt": "8f0e5f6f8fe7371b645e8ddb62fe34c8fa1b8983d63dac0ea17396c63e989d64",
    "valid.txt": "c41295ce22daac28a0d99cc480e80d57a374b2ec952a0c4caa08edc7ad450ddf",
    "test.txt": "e609aa5cffa68d75e23da2a99a00300849881a1a9173fd93e84c27f0b949d863",
    "objects.jsonl": "d93924c5eb6313d4b4b67312e4b6e737dcf8d8b92a56835382d3115164504000",
}


def test_default_parameters_keep_the_original_set(tmp_path: Path) -> None:
    files = _generate_pinned(tmp_path / "default", SynthConfig(train=30, valid=10, test=10),
                             ORIGINAL_SHA256)
    generate(tmp_path / "explicit", SynthConfig(train=30, valid=10, test=10, unseen_names=0,
                                                unseen_rate=0.3, image_told_cues=True))
    assert _digest(tmp_path / "explicit") == files  # images and meta.json too
    meta = json.loads((tmp_path / "default" / "meta.json").read_text())["tweets"]
    assert all(m["unseen_positions"] == [] and not any(e["unseen"] for e in m["entities"])
               for m in meta.values())


def test_fewest_names_constant_matches_the_name_lists() -> None:
    assert SynthConfig._FEWEST_NAMES == min(len(names) for names in NAMES.values())


UNSEEN = SynthConfig(train=150, valid=50, test=250, seed=7, unseen_names=3, unseen_rate=0.4,
                     image_told_cues=False)


@pytest.fixture(scope="module")
def unseen_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic_unseen")
    generate(root, UNSEEN)
    return root


def test_unseen_names_only_in_test_at_about_the_rate(unseen_set: Path) -> None:
    splits = {t.image_id: t for tweets in read_split_dir(unseen_set).values() for t in tweets}
    meta = json.loads((unseen_set / "meta.json").read_text())["tweets"]
    held = {n for names in NAMES.values() for n in names[-3:]}
    drawn = {"train": 0, "valid": 0, "test": 0}
    unseen = dict(drawn)
    for image_id, m in meta.items():
        positions = []
        for e in m["entities"]:
            assert e["unseen"] == (e["name"] in held)
            if e["ambiguous"]:
                assert not e["unseen"]
                continue
            drawn[m["split"]] += 1
            unseen[m["split"]] += e["unseen"]
            if e["unseen"]:
                positions += range(e["start"], e["end"])
        assert m["unseen_positions"] == positions
        for pos in positions:
            assert splits[image_id].tags[pos] != "O"
    words = {w for split in ("train", "valid") for t in splits.values()
             if meta[t.image_id]["split"] == split for w in t.words}
    assert unseen["train"] == unseen["valid"] == 0
    assert not {n for n in held if n in words}  # single-word held-out names never in train/valid
    assert 0.3 < unseen["test"] / drawn["test"] < 0.5  # unseen_rate=0.4
    # names_per_type: held out from within the first n names
    pools = name_pools(SynthConfig(names_per_type=5, unseen_names=2))
    assert pools["PER"] == (NAMES["PER"][:3], NAMES["PER"][3:5])


def test_no_cue_with_ambiguous_names_and_image_told_positions(unseen_set: Path,
                                                              small_set: Path) -> None:
    meta = json.loads((unseen_set / "meta.json").read_text())["tweets"]
    with_ambiguous = [m for m in meta.values() if m["ambiguous_positions"]]
    assert len(with_ambiguous) > 20
    assert all(not m["cue_words"] for m in with_ambiguous)  # image_told_cues=False
    assert any(m["cue_words"] for m in meta.values())  # other tweets still get cues
    for m in meta.values():  # without cues: every ambiguous name with an image is image-told
        assert m["image_told_positions"] == (m["ambiguous_positions"] if m["has_image"] else [])
    # the default set: ambiguous names with a cue or without an image are not image-told
    meta = json.loads((small_set / "meta.json").read_text())["tweets"]
    kinds = defaultdict(int)
    for m in meta.values():
        told = m["image_told_positions"]
        if told:
            assert m["has_image"] and not m["cue_words"] and told == m["ambiguous_positions"]
        elif m["ambiguous_positions"]:
            assert m["cue_words"] or not m["has_image"]
            kinds["cue" if m["cue_words"] else "no image"] += 1
    assert kinds["cue"] > 0 and sum(bool(m["image_told_positions"]) for m in meta.values()) > 10


@pytest.mark.parametrize("kwargs, match", [
    ({"unseen_names": -1}, "unseen_names"), ({"unseen_names": 15}, "unseen_names"),
    ({"names_per_type": 3, "unseen_names": 3}, "unseen_names"), ({"unseen_rate": 1.5}, "unseen_rate"),
    ({"unseen_rate": -0.1}, "unseen_rate")])
def test_benchmark_options_are_validated(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SynthConfig(**kwargs)


def test_benchmark_options_accept_their_bounds() -> None:
    SynthConfig(unseen_names=14, unseen_rate=1.0)
    SynthConfig(names_per_type=3, unseen_names=2, unseen_rate=0.0)


def _hue_share(img: Image.Image, box: list[float], hue: float) -> float:
    """The share of a box's pixels that are saturated and within 10 degrees of ``hue`` (degrees)."""
    h, s, v = (band.load() for band in img.convert("HSV").split())
    x1, y1, x2, y2 = (int(round(c)) for c in box)
    pixels = [(x, y) for x in range(x1, x2) for y in range(y1, y2)]
    near = sum(1 for x, y in pixels if s[x, y] > 120 and v[x, y] > 60
               and min(abs(h[x, y] * 360 / 255 - hue), 360 - abs(h[x, y] * 360 / 255 - hue)) < 10)
    return near / len(pixels)


def test_type_colours_show_the_type_and_keep_the_rest(tmp_path: Path) -> None:
    """object_colours="type": every entity object is drawn mostly in its type's hue and in no other
    type's; distractors in none; the same tweets, boxes and rng draws as object_colours="name"."""
    hues = {t: colorsys.rgb_to_hsv(*(c / 255 for c in rgb))[0] * 360 for t, rgb in TYPE_COLOURS.items()}
    cfg = dict(train=20, valid=5, test=5, seed=3, image_told_cues=False)
    generate(tmp_path / "type", SynthConfig(**cfg, object_colours="type"))
    generate(tmp_path / "name", SynthConfig(**cfg))
    for split in ("train.txt", "valid.txt", "test.txt", "objects.jsonl"):
        assert (tmp_path / "type" / split).read_bytes() == (tmp_path / "name" / split).read_bytes()
    kind_type = {k: t for t, kinds in TYPE_OBJECTS.items() for k in kinds}
    checked = defaultdict(int)
    for det in read_objects(tmp_path / "type" / "objects.jsonl").values():
        img = Image.open(tmp_path / "type" / "images" / f"{det.image_id}.jpg")
        for box, kind in zip(det.boxes, det.names, strict=True):
            shares = {t: _hue_share(img, box, hue) for t, hue in hues.items()}
            if kind in kind_type:
                own = shares.pop(kind_type[kind])
                assert own > 0.15 and max(shares.values()) < 0.02, (det.image_id, kind, own, shares)
            else:
                assert max(shares.values()) < 0.02, (det.image_id, kind, shares)
            checked[kind_type.get(kind, "distractor")] += 1
    assert set(checked) == set(TYPE_COLOURS) | {"distractor"}
    assert entity_style("Jordan", "PER")[1] == entity_style("Jordan")[1]  # the mark stays the name's
    with pytest.raises(ValueError, match="object_colours"):
        SynthConfig(object_colours="kind")


# the benchmark's options (make claims, make demo) at a small size, as generated when
# object_colours was added: text and objects are those of object_colours="name" too
BENCHMARK_SHA256 = {
    "train.txt": "2535d366a26503aac971e8d89d656e846a4a576b74d68c76ea7b17533ea98793",
    "valid.txt": "a4c8dc3010830e5642ab3ffdb6be53498d889ea56b3ad3567ff5ec6e2e3c0ea7",
    "test.txt": "765ef9f84fef963d1ab5d3f1103ecf51b9ba54de74c0b633b9bdb83cae60de50",
    "objects.jsonl": "8ff6063ef64e42f85ae5ec1ad43997319661d8e6a81b29cb906fcd4dbf60ce10",
}


def test_benchmark_options_keep_their_set(tmp_path: Path) -> None:
    """A cached set is found by its parameters' digest alone (``ensure_synthetic``), so a change of
    the draws for given parameters must bump GENERATOR_VERSION: this pins the benchmark's draws
    (a failure here means: bump it, and re-pin)."""
    cfg = SynthConfig(train=30, valid=10, test=10, unseen_names=2, image_told_cues=False,
                      object_colours="type")
    _generate_pinned(tmp_path, cfg, BENCHMARK_SHA256)
    assert entity_style("Jordan", "PER") == ((242, 44, 44), 1)  # red, shade 1.1, the name's mark
    assert entity_style("Jordan", "LOC") == ((44, 88, 242), 1)
