"""What the figures of Figs. 3 and 4 share: colours, greyed-out patches, a new Figure, keep-rate axes.

matplotlib is imported when a figure is drawn. Every drawing function of the package returns a
matplotlib Figure made without pyplot (no backend is selected or changed): a notebook shows it with
display(fig), a script saves it with fig.savefig(path).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

ENTITY_COLOURS = {"PER": "#1f77b4", "LOC": "#2ca02c", "ORG": "#d62728", "MISC": "#9467bd"}
DROPPED_FACE, DROPPED_TEXT = "#e4e4e4", "#a0a0a0"


def greyed(image: torch.Tensor, keep: torch.Tensor) -> Any:
    """An (H, W, 3) numpy image in [0, 1] whose dropped patches are greyed out (desaturated and
    faded towards light grey) and whose kept patches are left as they are.

    Args:
        image: (3, H, W) in [0, 1].
        keep: (g, g) bool patch decisions (row-major, as the ViT orders its patches).
    """
    g = keep.shape[0]
    h, w = image.shape[1:]
    # (H, W): each patch decision repeated over its pixels
    cells = keep.float().repeat_interleave(-(-h // g), 0)[:h].repeat_interleave(-(-w // g), 1)[:, :w]
    grey = 0.3 * image.mean(0, keepdim=True) + 0.7 * 0.62  # (1, H, W): mid grey, a trace of the content
    out = image * cells + grey * (1 - cells)  # (3, H, W)
    return out.permute(1, 2, 0).numpy()


def new_figure(width: float, height: float) -> Any:
    """A white matplotlib Figure (100 dpi) made without pyplot.

    Args:
        width, height: its size in inches.
    """
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, facecolor="white")


def rate_axes(ax: Any, lines: Sequence[tuple[str, list[float], dict]], title: str,
              layer: int | None = None) -> None:
    """A small keep-rate-per-BGA-layer plot.

    Args:
        ax: the matplotlib Axes to draw on.
        lines: (label, keep rate per layer in [0, 1], extra ``plot`` keywords) per line.
        title: the axes' title.
        layer: a BGA layer (0-based) to mark with a dotted vertical line (None: none).
    """
    for label, rates, style in lines:
        xs = range(1, len(rates) + 1)
        ax.plot(xs, [100 * r for r in rates], label=label, **({"marker": "o", "ms": 4} | style))
    if layer is not None:
        ax.axvline(layer + 1, color="#888888", lw=0.8, ls=":")
    n = len(lines[0][1]) if lines else 1
    ax.set_xticks(range(1, n + 1))
    ax.set_xlim(0.6, n + 0.4)
    ax.set_ylim(-3, 105)
    ax.set_xlabel("BGA layer", fontsize=8)
    ax.set_ylabel("kept (%)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
