"""The notebooks: committed without outputs; executed on a smoke run (nbclient, inline backend) every
figure cell holds its picture; the HTML pages and the index (bga_mner.notebooks) embed them, and a
headless Chromium shows every image of them (slow; skipped without Chromium)."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from bga_mner import notebooks
from conftest import as_experiment
from bga_mner.notebooks import FIGURE_IF_DATA_TAG, FIGURE_TAG, NO_DATA, missing_figures, write_pages

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ("scs_masks", "generative_alignment", "results")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(b)), None)


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs_with_parameters_first(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{name}: has outputs"
    assert nb.cells[0].cell_type == "code" and "# Parameters" in nb.cells[0].source
    assert "runs/demo" in nb.cells[0].source  # defaults to the demo's runs
    tags = [t for c in code for t in c.metadata.get("tags", [])]
    assert tags.count(FIGURE_TAG) + tags.count(FIGURE_IF_DATA_TAG) >= 2, f"{name}: no figure cells"
    assert "%matplotlib inline" in code[1].source  # figures inline whatever MPLBACKEND says


# --------------------------------------------------------------------------- pages (fast)
def _png(width: float = 3, height: float = 2) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    fig.subplots().plot([0, 1], [1, 0])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _fake_executed(path: Path, with_picture: bool = True) -> Path:
    """An executed notebook: a heading, a figure cell (with its PNG) and a figure-if-data cell
    that had no data."""
    figure = new_code_cell("display(fig)", metadata={"tags": [FIGURE_TAG]}, execution_count=1)
    if with_picture:
        figure.outputs = [new_output("display_data", data={
            "image/png": base64.b64encode(_png()).decode(), "text/plain": "<Figure>"})]
    no_data = new_code_cell("print(...)", metadata={"tags": [FIGURE_IF_DATA_TAG]}, execution_count=2,
                            outputs=[new_output("stream", name="stdout", text=f"{NO_DATA}: no runs\n")])
    nb = new_notebook(cells=[new_markdown_cell("# Fig. 9: a fake\n\nWhat it **shows**.\n\nMore."),
                             figure, no_data])
    nbformat.write(nb, path)
    return path


def _data_uris(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_missing_figures_names_the_cells_without_their_picture(tmp_path):
    ok = nbformat.read(_fake_executed(tmp_path / "ok.ipynb"), as_version=4)
    assert missing_figures(ok) == []
    bad = nbformat.read(_fake_executed(tmp_path / "bad.ipynb", with_picture=False), as_version=4)
    assert missing_figures(bad) == ["cell 1: display(fig)"]
    bad.cells[2].outputs = []  # a figure-if-data cell that neither drew nor said why
    assert missing_figures(bad) == ["cell 1: display(fig)", "cell 2: print(...)"]


def test_pages_embed_the_figures_and_the_index_links_them_with_the_report(tmp_path):
    out, report = tmp_path / "runs" / "notebooks", tmp_path / "runs" / "report"
    out.mkdir(parents=True)
    report.mkdir()
    (report / "table2.md").write_text("## Table 2: main results\n\n| Method | F1 |\n|---|---|\n| BGA-MNER | 81.40 |\n")
    (report / "fig5.md").write_text("## Fig. 5\n\n| n | F1 |\n|---|---|\n| 50 | 60.00 |\n\n![Fig. 5](fig5.png)\n")
    (report / "fig5.png").write_bytes(_png(6, 3))
    executed = _fake_executed(out / "fake.ipynb")
    index = write_pages([executed], out, report, tmp_path / "runs" / "demo" / "bga", tmp_path / "runs")

    page = (out / "fake.html").read_text()
    assert "<title>Fig. 9: a fake</title>" in page
    assert [u[:8] for u in _data_uris(page)] == [PNG_MAGIC]   # the figure, embedded
    assert NO_DATA in page
    assert not re.search(r'<script[^>]+src="https?:', page)  # opens offline

    text = index.read_text()
    assert index == out / "index.html"
    assert '<a href="fake.html"><b>Fig. 9: a fake</b></a>' in text and "(1 figure;" in text
    assert '<a href="fake.ipynb">notebook</a>' in text and "What it <strong>shows</strong>." in text
    assert "<table>" in text and "<td>BGA-MNER</td>" in text and "Table 2: main results" in text
    assert '<a href="../report/fig5.png"><img src="data:image/png;base64,' in text
    assert (out / "../report/fig5.png").resolve().is_file()
    assert _data_uris(text) == [(report / "fig5.png").read_bytes()]
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temporary files left


def test_index_without_a_report_says_how_to_write_one(tmp_path):
    index = write_pages([_fake_executed(tmp_path / "fake.ipynb")], tmp_path, tmp_path / "report")
    assert "No report in" in index.read_text() and "bga-mner report RUNS" in index.read_text()


# --------------------------------------------------------------------------- executed (slow)
def _fake_result(runs: Path, name: str, f1: float, model: str, train_limit: int, seed: int) -> None:
    scores = {"precision": f1, "recall": f1, "f1": f1}
    results = {"run": name, "experiment": "data_limited", "dataset": "synthetic", "test_dataset": "synthetic",
               "model": model, "seed": seed, "profile": "smoke",
               "test": {"overall": scores, **{t: scores for t in ("PER", "LOC", "ORG", "MISC")}},
               "config": {"model": {"use_mcg": model == "bga-mner"}, "data": {"train_limit": train_limit}}}
    (runs / name).mkdir(parents=True)
    (runs / name / "results.json").write_text(json.dumps(results))


@pytest.fixture(scope="module")
def pages(smoke_run, tmp_path_factory):
    """The notebooks executed on the smoke run as ``make notebooks`` does, with their pages and the
    index. The runs folder reported holds the smoke run's results and data-limited ones (Fig. 5)."""
    from bga_mner.report import build_report

    run_dir, _ = smoke_run
    runs = tmp_path_factory.mktemp("pages-runs")
    shutil.copytree(run_dir, runs / run_dir.name, ignore=shutil.ignore_patterns("checkpoints", "wandb", "csv"))
    as_experiment(runs / run_dir.name, "bga_mner")  # the report places a run by its experiment
    for n in (16, 32):
        for seed in (1, 2):
            _fake_result(runs, f"fig5-bga-{n}-{seed}", 40.0 + n + seed, "bga-mner", n, seed)
            _fake_result(runs, f"fig5-text-{n}-{seed}", 35.0 + n + seed, "bert-crf", n, seed)
    out = runs / "notebooks"
    executed = notebooks.execute_notebooks(run_dir, runs, out, timeout=300)
    build_report(runs)
    index = write_pages(executed, out, runs / "report", run_dir, runs)
    return {p.stem: nbformat.read(p, as_version=4) for p in executed}, index


@pytest.mark.slow
def test_every_figure_cell_of_the_executed_notebooks_holds_a_png(pages):
    executed, _ = pages
    assert set(executed) == set(NAMES)
    for name, nb in executed.items():
        assert missing_figures(nb) == [], name
        for cell in nb.cells:
            for o in cell.get("outputs", []):
                if "image/png" in o.get("data", {}):
                    assert base64.b64decode(o["data"]["image/png"])[:8] == PNG_MAGIC
    text = {n: "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
            for n, nb in executed.items()}
    assert "recall@1" in text["generative_alignment"] and "chance:" in text["generative_alignment"]
    assert "3 tweets shown" in text["scs_masks"] and "entity pieces minus filler" in text["scs_masks"]
    assert "runs under" in text["results"] and f"{NO_DATA}: no data set with both" in text["results"]
    assert len(notebooks.figures(executed["scs_masks"])) == 3 + 1  # three tweets + the pooled rates
    assert len(notebooks.figures(executed["results"])) == 2         # Fig. 5 and per-type F1


def _images_in_browser(page: Path, tmp_path: Path, screenshot: Path | None = None) -> dict:
    """Open ``page`` in headless Chromium and report its images: ``{"n", "bad", "widths"}`` where
    ``bad`` lists those that did not load (naturalWidth 0). The page is copied beside itself with
    a small script that writes the report into the DOM once the page has loaded."""
    probe = page.with_name(f"{page.stem}.probe.html")
    script = ("<script>window.addEventListener('load', () => { const im = Array.from(document.images);"
              " const pre = document.createElement('pre'); pre.id = 'img-check';"
              " pre.textContent = JSON.stringify({n: im.length, widths: im.map(i => i.naturalWidth),"
              " bad: im.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 60))});"
              " document.body.appendChild(pre); });</script>")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8")
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'chromium'}",
             "--virtual-time-budget=15000"]
    try:
        dom = subprocess.run(flags + ["--dump-dom", probe.as_uri()], capture_output=True, text=True,
                             timeout=180, check=True).stdout
        if screenshot is not None:
            subprocess.run(flags + ["--hide-scrollbars", "--window-size=1400,3000",
                                    f"--screenshot={screenshot}", page.as_uri()],
                           capture_output=True, timeout=180, check=True)
    finally:
        probe.unlink()
    found = re.search(r'<pre id="img-check">(.*?)</pre>', dom, re.S)
    assert found, f"{page}: the page did not finish loading in Chromium"
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (Debian: apt-get install chromium)")
def test_chromium_shows_every_image_of_the_index_and_a_notebook_page(pages, tmp_path):
    executed, index = pages
    shown = _images_in_browser(index, tmp_path, screenshot=tmp_path / "index.png")
    assert shown["n"] == 1 and shown["bad"] == [], shown  # fig5.png of the data-limited runs
    assert (index.parent / "../report/fig5.png").resolve().is_file()
    assert _image_size(tmp_path / "index.png")[0] == 1400
    for name in ("scs_masks", "results"):
        shown = _images_in_browser(index.with_name(f"{name}.html"), tmp_path)
        assert shown["bad"] == [] and shown["n"] >= len(notebooks.figures(executed[name])), (name, shown)
        assert min(shown["widths"]) > 0


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size
