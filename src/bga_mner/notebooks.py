"""Execute the analysis notebooks against a run and publish them as web pages:
``python -m bga_mner.notebooks --run DIR`` (``make notebooks``).

The notebooks in ``notebooks/`` are committed without outputs and read their parameters from the
environment (``BGA_MNER_RUN``: a BGA-MNER run folder; ``BGA_MNER_RUNS``: a runs folder), defaulting
to the demo's. Each is executed with nbclient under matplotlib's inline backend, so every figure is
kept in the executed notebook as an ``image/png`` output, and written beside the runs
(``<runs>/notebooks/`` by default) twice: the executed ``.ipynb`` and a self-contained ``.html``
page (nbconvert; images embedded, no script loaded from the network). ``index.html`` links the
pages and shows the report of the runs folder: the markdown tables of ``bga-mner report`` (written
to ``<runs>/report/`` first) rendered to HTML, and ``fig5.png`` where there are data-limited runs.

Cells that draw are tagged in their metadata: ``figure`` (always draws) or ``figure-if-data`` (draws
when the runs hold what it needs, else prints a line starting with :data:`NO_DATA`); the tests
check that every such cell of an executed notebook holds its picture.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import html
import os
import re
import sys
from pathlib import Path
from typing import Any, Sequence

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NAMES = ("scs_masks", "generative_alignment", "results")
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
FIGURE_TAG, FIGURE_IF_DATA_TAG = "figure", "figure-if-data"
NO_DATA = "No data for this figure"
REPORT_ORDER = ("table2", "table3", "table4", "table5", "table6", "table7", "fig5")

# nbconvert's lab template without what it loads from the network (require.js, MathJax, Mermaid,
# widgets): the notebooks use none of them, and the pages must open offline.
OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""

INDEX_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } .meta { color: #666; font-size: 0.9em; }
ul.pages li { margin: 0.6em 0; } .figs { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead { background: #f3f3f3; } code { background: #f3f3f3; padding: 0 0.2em; }
img { max-width: 100%; } a.anchor-link { display: none; }
section.report { border-top: 1px solid #ddd; margin-top: 2em; }
"""


# --------------------------------------------------------------------------- executing
def execute_notebooks(run_dir: Path, runs_dir: Path, out_dir: Path, names: Sequence[str] = NAMES,
                      timeout: int = 600) -> list[Path]:
    """Execute notebooks top to bottom against ``run_dir``/``runs_dir``; return the executed copies.

    Args:
        run_dir: a BGA-MNER run folder (with ``checkpoints/best.ckpt``).
        runs_dir: the folder of runs the results notebook reports on.
        out_dir: where the executed notebooks are written.
        names: which notebooks (file stems in ``notebooks/``).
        timeout: seconds per cell.
    """
    import nbformat
    from nbclient import NotebookClient

    if not (run_dir / "checkpoints" / "best.ckpt").is_file():
        raise FileNotFoundError(f"{run_dir}/checkpoints/best.ckpt: not a finished run folder")
    warnings = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), "ignore:IProgress not found"]))
    env = dict(os.environ, BGA_MNER_RUN=str(run_dir.resolve()), BGA_MNER_RUNS=str(runs_dir.resolve()),
               MPLBACKEND=INLINE_BACKEND,  # figures kept as image/png outputs
               PYTHONWARNINGS=warnings)  # tqdm's note that ipywidgets is missing (no widgets here)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       extra_arguments=["--IPKernelApp.log_level=ERROR"],  # not its TCP notice
                       resources={"metadata": {"path": str(NOTEBOOKS_DIR.parent)}}).execute(env=env)
        path = out_dir / f"{name}.ipynb"
        nbformat.write(nb, path)
        written.append(path)
        print(f"executed {name}.ipynb -> {path} ({len(figures(nb))} figures)")
    return written


def figures(nb: Any) -> list[dict]:
    """The ``image/png`` outputs of a notebook, in order."""
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})]


def missing_figures(nb: Any) -> list[str]:
    """The figure cells of an executed notebook without their picture: a ``figure`` cell without an
    ``image/png`` output, or a ``figure-if-data`` cell with neither one nor a :data:`NO_DATA` line.
    Each is named by its index and first line."""
    missing = []
    for i, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type != "code" or not {FIGURE_TAG, FIGURE_IF_DATA_TAG} & set(tags):
            continue
        outputs = cell.get("outputs", [])
        has_png = any("image/png" in o.get("data", {}) for o in outputs)
        says_no_data = any(NO_DATA in o.get("text", "") or NO_DATA in o.get("data", {}).get("text/markdown", "")
                           for o in outputs)
        if not has_png and not (FIGURE_IF_DATA_TAG in tags and says_no_data):
            missing.append(f"cell {i}: {cell.source.splitlines()[0] if cell.source else ''}")
    return missing


# --------------------------------------------------------------------------- pages
def notebook_html(nb: Any, title: str) -> str:
    """A self-contained HTML page of an executed notebook (outputs' images embedded as data URIs)."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", template_file="bga_offline.html.j2",
                            extra_loaders=[DictLoader({"bga_offline.html.j2": OFFLINE_TEMPLATE})])
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    return body


def notebook_summary(nb: Any) -> tuple[str, str]:
    """The title (the first markdown heading) and the first paragraph after it of a notebook."""
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.strip().splitlines()
        if lines and lines[0].startswith("#"):
            paragraphs = "\n".join(lines[1:]).strip().split("\n\n")
            return lines[0].lstrip("#").strip(), paragraphs[0].replace("\n", " ") if paragraphs else ""
    return "", ""


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def report_html(report_dir: Path, page_dir: Path) -> str:
    """The markdown tables of ``bga-mner report`` in ``report_dir`` as HTML. Images they show
    (``fig5.png``) are embedded as data URIs and link to the file (relative to ``page_dir``)."""
    from nbconvert.filters import markdown2html

    files = [report_dir / f"{name}.md" for name in REPORT_ORDER]
    texts = [f.read_text(encoding="utf-8") for f in files if f.is_file()]
    if not texts:
        return (f"<p>No report in <code>{html.escape(str(report_dir))}</code>: "
                f"<code>bga-mner report RUNS</code> writes it.</p>")
    rendered = markdown2html("\n\n".join(texts))

    def embed(match: re.Match) -> str:
        src, rest = match.group(1), match.group(2)
        file = report_dir / html.unescape(src)
        if "://" in src or src.startswith("data:") or not file.is_file():
            return match.group(0)
        href = html.escape(Path(os.path.relpath(file, page_dir)).as_posix())
        return f'<a href="{href}"><img src="{_png_data_uri(file)}"{rest}></a>'

    return re.sub(r'<img src="([^"]+)"([^>]*)>', embed, rendered)


def index_html(pages: Sequence[tuple[Path, Any]], report_dir: Path, page_dir: Path,
               run_dir: Path | None = None, runs_dir: Path | None = None) -> str:
    """The index page: a link to each notebook page (its title, first paragraph, figure count,
    and the executed ``.ipynb``), then the report of the runs folder (:func:`report_html`).

    Args:
        pages: (html page, executed notebook) pairs.
        report_dir: the ``bga-mner report`` folder shown below the links.
        page_dir: where the index is written (links are relative to it).
        run_dir, runs_dir: named in the page's header.
    """
    from nbconvert.filters import markdown2html

    items = []
    for page, nb in pages:
        title, about = notebook_summary(nb)
        n = len(figures(nb))
        link = html.escape(Path(os.path.relpath(page, page_dir)).as_posix())
        ipynb = html.escape(Path(os.path.relpath(page.with_suffix(".ipynb"), page_dir)).as_posix())
        about_html = re.sub(r"^<p>|</p>\s*$", "", markdown2html(about).strip())
        items.append(f'<li><a href="{link}"><b>{html.escape(title or page.stem)}</b></a> '
                     f'<span class="figs">({n} figure{"s" if n != 1 else ""}; '
                     f'<a href="{ipynb}">notebook</a>)</span><br>{about_html}</li>')
    meta = []
    if run_dir is not None:
        meta.append(f"run analysed: <code>{html.escape(str(run_dir))}</code>")
    if runs_dir is not None:
        meta.append(f"runs reported: <code>{html.escape(str(runs_dir))}</code>")
    meta.append(f"written {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>bga-mner: analyses and report</title>\n<style>{INDEX_CSS}</style>\n</head>\n<body>\n"
            "<h1>bga-mner: analyses and report</h1>\n"
            f"<p class=\"meta\">{' · '.join(meta)}</p>\n"
            "<h2>Notebooks</h2>\n<ul class=\"pages\">\n" + "\n".join(items) + "\n</ul>\n"
            "<section class=\"report\">\n" + report_html(report_dir, page_dir) + "\n</section>\n"
            "</body>\n</html>\n")


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_pages(executed: Sequence[Path], out_dir: Path, report_dir: Path, run_dir: Path | None = None,
                runs_dir: Path | None = None) -> Path:
    """Write ``<name>.html`` beside each executed notebook and ``index.html`` in ``out_dir``.

    Args:
        executed: executed ``.ipynb`` files (:func:`execute_notebooks`).
        out_dir: where the pages go (the notebooks' folder: the index links the ``.ipynb`` too).
        report_dir: the ``bga-mner report`` folder the index shows.
        run_dir, runs_dir: named in the index's header.

    Returns:
        the index page.
    """
    import nbformat

    out_dir.mkdir(parents=True, exist_ok=True)
    pages = []
    for path in executed:
        nb = nbformat.read(path, as_version=4)
        title = notebook_summary(nb)[0] or path.stem
        page = out_dir / f"{path.stem}.html"
        _write(page, notebook_html(nb, title))
        pages.append((page, nb))
    index = out_dir / "index.html"
    _write(index, index_html(pages, report_dir, out_dir, run_dir, runs_dir))
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="BGA-MNER run folder")
    parser.add_argument("--runs", type=Path, default=None, help="runs folder (default: parent of --run)")
    parser.add_argument("--out", type=Path, default=None, help="default: <runs>/notebooks")
    args = parser.parse_args(argv)
    runs = args.runs or args.run.parent
    out = args.out or runs / "notebooks"
    try:
        executed = execute_notebooks(args.run, runs, out)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from bga_mner.report import build_report

    build_report(runs)  # the tables the index shows: <runs>/report/ (what `bga-mner report` writes)
    index = write_pages(executed, out, runs / "report", args.run, runs)
    for path in executed:
        print(f"page: {path.with_suffix('.html')}")
    print(f"\nopen {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
