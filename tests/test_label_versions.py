"""The two Twitter-2015 label versions (data/label_versions.py): told by checksum, by content and by
counts; shown by `bga-mner stats`; and the report compares with the paper only on the paper's."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from bga_mner.cli import main as cli
from bga_mner.data.conll import read_split_dir
from bga_mner.data.label_versions import (ORIGINAL, REPAIRED, UNKNOWN, SplitVersion, detect_version,
                                          folder_version, orphan_i_tags, paper_version)
from bga_mner.report import load_results, render_table2

DATA = Path(os.environ.get("BGA_MNER_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def _data(name: str) -> Path:
    if not (DATA / name / "train.txt").is_file():
        pytest.skip(f"{DATA / name} not present")
    return DATA / name


def repair(src: Path, dst: Path) -> int:
    """Copy a CoNLL file, turning every orphan I-X (continuing no X entity) into B-X: the repair
    HVPNeT's maintainers describe ("entities with only I- tags and no B- tag"). Returns the repairs."""
    out, prev, fixed = [], "O", 0
    for line in src.read_text(encoding="utf-8").split("\n"):
        if "\t" in line:
            word, tag = line.split("\t")
            if tag.startswith("I-") and prev[2:] != tag[2:]:
                tag, fixed = "B-" + tag[2:], fixed + 1
            prev, line = tag, f"{word}\t{tag}"
        else:
            prev = "O"
        out.append(line)
    dst.write_text("\n".join(out), encoding="utf-8")
    return fixed


def _version(root: Path):
    return detect_version(root, read_split_dir(root))


def test_orphan_i_tags_and_folder_version() -> None:
    assert orphan_i_tags(["I-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-ORG", "O", "I-ORG"]) == 3
    assert orphan_i_tags(["B-PER", "I-PER", "B-PER", "I-PER"]) == 0

    def v(*versions: str) -> list[SplitVersion]:
        return [SplitVersion(s, x, "counts", 1, 0) for s, x in zip(("train", "valid", "test"), versions)]

    assert folder_version(v(ORIGINAL, ORIGINAL, ORIGINAL)) == ORIGINAL
    assert folder_version(v(ORIGINAL, ORIGINAL, REPAIRED)) == REPAIRED  # HVPNeT: mostly the test set
    assert folder_version(v(ORIGINAL, UNKNOWN, REPAIRED)) == UNKNOWN
    assert paper_version() == ORIGINAL


def test_original_files_by_checksum_and_by_content(tmp_path: Path) -> None:
    for name in ("twitter2015", "twitter2017"):
        version = _version(_data(name))
        assert (version.dataset, version.version) == (name, ORIGINAL)
        assert {v.how for v in version.splits.values()} == {"sha256"}
    copy = tmp_path / "some-folder"  # re-encoded (CRLF), under another name: told by its tweets
    copy.mkdir()
    for split in ("train", "valid", "test"):
        text = (_data("twitter2015") / f"{split}.txt").read_bytes()
        (copy / f"{split}.txt").write_bytes(b"\xef\xbb\xbf" + text.replace(b"\n", b"\r\n"))
    version = _version(copy)
    assert (version.dataset, version.version) == ("twitter2015", ORIGINAL)
    assert {v.how for v in version.splits.values()} == {"content"}


def test_repaired_twitter2015_detected(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A repaired version made here as HVPNeT describes theirs (their files are not available here):
    the test split repaired -> hvpnet-repaired, by counts; `bga-mner stats` says so."""
    original = _data("twitter2015")
    root = tmp_path / "twitter2015"
    shutil.copytree(original, root)
    assert repair(original / "test.txt", root / "test.txt") == 135
    version = _version(root)
    assert version.version == REPAIRED
    assert {s: (v.version, v.how, v.orphan_i) for s, v in version.splits.items()} == {
        "train": (ORIGINAL, "sha256", 186), "valid": (ORIGINAL, "sha256", 53), "test": (REPAIRED, "counts", 0)}
    for split in ("train", "valid"):  # every split repaired: still the repaired version
        repair(original / f"{split}.txt", root / f"{split}.txt")
    assert _version(root).version == REPAIRED
    assert cli(["stats", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["labels"]["version"] == REPAIRED
    assert cli(["stats", str(root)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(
        "labels: twitter2015 hvpnet-repaired (not the paper's version, umt-original; train: hvpnet-repaired by counts")
    # an edit that is not the repair (a type changed, the orphans kept): unknown
    text = (original / "test.txt").read_text(encoding="utf-8").replace("\tB-PER\n", "\tB-ORG\n", 1)
    (root / "test.txt").write_text(text, encoding="utf-8")
    assert _version(root).splits["test"].version == UNKNOWN


def _run(runs: Path, name: str, profile: str = "full", labels: str | None = None) -> None:
    from test_report import _write_run

    path = _write_run(runs, name, 70.0, profile=profile)
    if labels is not None:
        data = json.loads(path.read_text())
        data["label_version"] = {"train": ORIGINAL, "valid": ORIGINAL, "test": labels}
        path.write_text(json.dumps(data))


def test_report_compares_with_the_paper_only_on_its_label_version(tmp_path: Path) -> None:
    _run(tmp_path / "orig", "bga_mner-twitter2015-seed42", labels=ORIGINAL)
    _run(tmp_path / "old", "bga_mner-twitter2015-seed42")  # written before label_version existed
    _run(tmp_path / "repaired", "bga_mner-twitter2015-seed42", labels=REPAIRED)
    _run(tmp_path / "rehearsal", "bga_mner-twitter2015-seed42", profile="rehearsal", labels=ORIGINAL)
    for folder in ("orig", "old"):
        table = render_table2(load_results(tmp_path / folder))
        assert "### Table 2 — twitter2015\n" in table and "BGA-MNER (paper)" in table
    table = render_table2(load_results(tmp_path / "repaired"))
    assert "BGA-MNER (paper)" not in table
    assert ("### Table 2 — twitter2015 (labels hvpnet-repaired, the paper used umt-original) "
            "— not comparable to the paper") in table
    table = render_table2(load_results(tmp_path / "rehearsal"))
    assert "BGA-MNER (paper)" not in table
    assert "twitter2015 (rehearsal profile: synthetic images, tiny models) — not comparable" in table
