"""`make data`: download from a local file:// mirror, verify sha256, never keep a bad file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bga_mner import data_fetch
from bga_mner.data_fetch import ChecksumError, fetch_datasets, fetch_file, load_sources

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _mirror(tmp_path: Path) -> dict:
    """A tiny two-file mirror and the sources dict that points at it."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    files = {"train.txt": "IMGID:1\nHello\tO\nParis\tB-LOC\n\n", "test.txt": "IMGID:2\nBob\tB-PER\n\n"}
    entries = {}
    for name, text in files.items():
        (mirror / name).write_text(text, encoding="utf-8")
        entries[name] = {"url": (mirror / name).as_uri(),
                         "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
    return {"datasets": {"tiny": entries}, "images": None}


def test_fetch_verifies_and_is_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sources = _mirror(tmp_path)
    out = tmp_path / "data"
    paths = fetch_datasets(out, ["tiny"], sources)
    assert [p.name for p in paths] == ["train.txt", "test.txt"]
    assert (out / "tiny" / "train.txt").read_text(encoding="utf-8").startswith("IMGID:1")
    assert "downloaded" in capsys.readouterr().out
    fetch_datasets(out, None, sources)  # second time: verified, not downloaded
    assert "downloaded" not in capsys.readouterr().out
    assert sorted(p.name for p in (out / "tiny").iterdir()) == ["test.txt", "train.txt"]  # no .part left


def test_checksum_mismatch_writes_nothing(tmp_path: Path) -> None:
    sources = _mirror(tmp_path)
    entry = sources["datasets"]["tiny"]["train.txt"]
    dest = tmp_path / "data" / "train.txt"
    with pytest.raises(ChecksumError, match="expected 0000"):
        fetch_file(entry["url"], dest, "0" * 64)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_existing_file_with_other_bytes_is_kept(tmp_path: Path) -> None:
    sources = _mirror(tmp_path)
    entry = sources["datasets"]["tiny"]["train.txt"]
    dest = tmp_path / "data" / "train.txt"
    dest.parent.mkdir()
    dest.write_text("my edited copy\n")
    with pytest.raises(ChecksumError, match=str(dest)):
        fetch_file(entry["url"], dest, entry["sha256"])
    assert dest.read_text() == "my edited copy\n"


def test_unknown_dataset_and_cli_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:
    sources = _mirror(tmp_path)
    with pytest.raises(KeyError, match="nope"):
        fetch_datasets(tmp_path, ["nope"], sources)
    monkeypatch.setattr(data_fetch, "load_sources", lambda path=None: sources)
    assert data_fetch.main(["--data-dir", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'd' / 'tiny' / 'images'}/<IMGID>.jpg" in out and "make detect" in out
    sources["datasets"]["tiny"]["test.txt"]["sha256"] = "f" * 64
    (tmp_path / "d" / "tiny" / "test.txt").unlink()
    assert data_fetch.main(["--data-dir", str(tmp_path / "d")]) == 1
    assert "expected ffff" in capsys.readouterr().err


def test_packaged_sources_list_both_datasets_at_a_pinned_commit() -> None:
    sources = load_sources()
    assert set(sources["datasets"]) == {"twitter2015", "twitter2017"}
    for files in sources["datasets"].values():
        assert set(files) == {"train.txt", "valid.txt", "test.txt"}
        for entry in files.values():
            assert entry["url"].startswith(f"https://raw.githubusercontent.com/jefferyYu/UMT/{sources['commit']}/")
            assert len(entry["sha256"]) == 64


def test_checksums_match_the_original_files() -> None:
    if not DATA.is_dir():
        pytest.skip(f"{DATA}: real data not present")
    for name, files in load_sources()["datasets"].items():
        for filename, entry in files.items():
            assert data_fetch.sha256_file(DATA / name / filename) == entry["sha256"], (name, filename)
