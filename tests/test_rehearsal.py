"""tools/rehearsal.py (make rehearsal): the release-shaped folder it builds from the text, what the
loader does with each special image, and the make target's plan (the real reproduce-table2 runs)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from bga_mner.data.release import ReleaseLayout, read_crop_dict

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"


def _tool():
    spec = importlib.util.spec_from_file_location("rehearsal", ROOT / "tools" / "rehearsal.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_makes_the_release_layout_and_each_special_image_is_handled(tmp_path: Path) -> None:
    tool = _tool()
    text = tmp_path / "text" / "twitter2017"
    shutil.copytree(FIXTURES / "tweets", text)
    out = tmp_path / "data"
    assert tool.main(["build", "--text", str(tmp_path / "text"), "--out", str(out),
                      "--datasets", "twitter2017"]) == 0
    for split in ("train", "valid", "test"):  # the text as it is, byte for byte
        assert (out / "twitter2017" / f"{split}.txt").read_bytes() == (text / f"{split}.txt").read_bytes()
    layout = ReleaseLayout(out / "twitter2017")
    assert layout.images_dir.is_dir() and layout.rcnn_dict() == out / "twitter17_detect" / "twitter17_img2crop.pth"
    val = read_crop_dict(layout.grounding_dict("valid"))
    assert set(val) <= {"fx6", "fx7", "fx8"} and all(n.endswith(".jpg") for v in val.values() for n in v)
    assert all(n.startswith("twitter17_detect/") for v in torch.load(layout.rcnn_dict()).values() for n in v)
    outcomes = tool.special_outcomes(out, tmp_path / "cache")
    status = {line.split()[1]: line.rsplit("-> ", 1)[1] for line in outcomes}
    assert status == {"missing": "missing", "grey": "ok", "cmyk": "ok", "exif_rotated": "ok",
                      "png_as_jpg": "ok", "png16_as_jpg": "ok", "truncated": "unreadable",
                      "folder": "unreadable", "dangling_symlink": "unreadable", "fifo": "unreadable"}
    with pytest.raises(SystemExit, match="not empty"):
        tool.build(tmp_path / "text", out, ["twitter2017"], None, 0)


def test_make_rehearsal_runs_the_real_table2_targets_on_the_folder(tmp_path: Path) -> None:
    """`make -n rehearsal`: build, stats, then reproduce-table2 itself (a dry-run sub-make) with the
    rehearsal profile on the folder, the report of Table 2, and the counts."""
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    out = subprocess.run(["make", "-n", "--no-print-directory", "rehearsal", f"RUNS={tmp_path}",
                          "REHEARSAL_TEXT=/nowhere"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    folder = tmp_path / "rehearsal"
    assert f"tools/rehearsal.py build --text /nowhere --out {folder}/data" in out
    fits = [line for line in out.splitlines() if "bga-mner fit " in line]
    assert len(fits) == 4 and all("run.profile=rehearsal" in f and f"paths.data_dir={folder}/data" in f
                                  for f in fits)
    assert {f.split("--config ")[1].split()[0] for f in fits} == {"experiments/bga_mner/config.yaml",
                                                                  "experiments/bert_crf/config.yaml"}
    assert f"bga-mner report {folder}/runs --table 2" in out and "rehearsal.py summary" in out
    assert not folder.exists()  # a dry run runs nothing
