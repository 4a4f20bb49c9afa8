"""Fig. 4 drawn: what each sampler (SCS) kept of one tweet (:func:`draw_masks`), and the keep rates
pooled over many tweets (:func:`draw_keep_rates`). Dropped units are greyed out, kept ones plain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from bga_mner.analysis.masks import KeepRates, TweetMasks
from bga_mner.analysis.plots import (DROPPED_FACE, DROPPED_TEXT, ENTITY_COLOURS, greyed, new_figure,
                                     rate_axes)

# draw_masks' geometry, in inches (font size in points)
_WIDTH, _FONT, _GAP = 15.0, 8.5, 1.6             # figure width; word piece font; gap between pieces (chars)
_LEFT, _TEXT_W, _RATE_W = 1.25, 10.0, 2.9        # text panel's left edge and width; keep-rate plots' width
_CHARS = _TEXT_W * 72 / (0.602 * _FONT)          # monospace: characters per line of the text panel
_LINE_H, _LAYER_GAP = 0.24, 0.12                 # a line of pieces; the gap between two layers' lines
_TOP_H, _TITLE_H, _LEGEND_H = 3.0, 0.6, 0.35     # the image row; the title; the legend


def _wrap(pieces: Sequence[str], width: float, gap: float) -> list[list[int]]:
    """Piece indices per line, each line at most ``width`` characters (``gap`` between pieces)."""
    lines: list[list[int]] = [[]]
    used = 0.0
    for j, piece in enumerate(pieces):
        need = len(piece) + gap
        if lines[-1] and used + need > width:
            lines.append([])
            used = 0.0
        lines[-1].append(j)
        used += need
    return lines


@dataclass(frozen=True)
class _Layout:
    """Where :func:`draw_masks` puts one tweet's panels: the wrapped lines and the heights (inches)."""

    lines: list[list[int]]  # piece indices of each line of the text panel
    text_h: float           # the text panel (every layer's lines)
    height: float           # the figure

    @classmethod
    def of(cls, m: TweetMasks) -> "_Layout":
        lines = _wrap(m.pieces, _CHARS, _GAP)
        text_h = m.num_layers * (len(lines) * _LINE_H + _LAYER_GAP) + 0.1
        height = _TITLE_H + _TOP_H + 0.45 + max(text_h, 2.0) + _LEGEND_H + 0.35
        return cls(lines, text_h, height)

    def axes(self, fig: Any, x: float, y_top: float, w: float, h: float) -> Any:
        """New axes at ``x`` and ``y_top`` inches from the figure's top-left, ``w`` x ``h`` inches."""
        return fig.add_axes((x / _WIDTH, 1 - (y_top + h) / self.height, w / _WIDTH, h / self.height))


def _draw_header(fig: Any, lay: _Layout, m: TweetMasks, text: str | None) -> None:
    """The title (id and words) and the keep rates of both samplers per layer."""
    t_all, v_all = m.text_keep_rate(), m.visual_keep_rate()
    title = f"{m.image_id}" + (f": {text}" if text else "")
    fig.text(0.5 / _WIDTH, 1 - 0.22 / lay.height, title if len(title) < 150 else title[:147] + "...",
             fontsize=11, fontweight="bold", va="center")
    fig.text(0.5 / _WIDTH, 1 - 0.45 / lay.height,
             "keep rate per BGA layer: text " + ", ".join(f"{100 * r:.0f}%" for r in t_all)
             + "   visual " + ", ".join(f"{100 * r:.0f}%" for r in v_all)
             + "   (grey: dropped by the sampler, plain: kept)", fontsize=9, va="center", color="#333333")


def _draw_images(fig: Any, lay: _Layout, m: TweetMasks, layer: int) -> None:
    """The global image and the object crops, the patches dropped at ``layer`` greyed out."""
    y0, x = _TITLE_H + 0.45, 0.5
    g = m.global_keep.shape[-1]
    ax = lay.axes(fig, x, y0, 2.45, 2.45)
    ax.imshow(greyed(m.image, m.global_keep[layer]))
    kept = int(m.global_keep[layer].sum())
    ax.set_title(f"image, layer {layer + 1}: {kept}/{g * g} patches kept\n"
                 f"[CLS] token {'kept' if m.cls_keep[layer] else 'dropped'}", fontsize=8.5)
    ax.axis("off")
    x += 2.7
    for c in range(m.crop_keep.shape[1]):
        ax = lay.axes(fig, x, y0 + 0.45, 2.0, 2.0)
        ax.axis("off")
        if bool(m.crop_present[c]):
            ax.imshow(greyed(m.crops[c], m.crop_keep[layer, c]))
            cg = m.crop_keep.shape[-1]
            ax.set_title(f"crop {c + 1}: {int(m.crop_keep[layer, c].sum())}/{cg * cg} kept", fontsize=8.5)
        else:
            ax.set_title(f"crop {c + 1}: no object", fontsize=8.5, color="#888888")
        x += 2.15


def _draw_visual_rates(fig: Any, lay: _Layout, m: TweetMasks, layer: int) -> None:
    """The visual keep rate across BGA layers: global patches, crop patches, all tokens."""
    ax = lay.axes(fig, _WIDTH - _RATE_W - 0.25, _TITLE_H + 0.45 + 0.15, _RATE_W, 2.05)
    every = {"color": "black", "ls": "--", "marker": None}
    rate_axes(ax, [("global patches", m.visual_keep_rate("global"), {"color": "#444444"}),
                   ("crop patches", m.visual_keep_rate("crops"), {"color": "#ff7f0e"}),
                   ("all visual tokens", m.visual_keep_rate(), every)],
              "visual SCS: keep rate per layer", layer)


def _draw_piece(ax: Any, m: TweetMasks, layer: int, j: int, x: float, y: float) -> None:
    """Word piece ``j`` as ``layer`` decided it, centred on ``x`` (characters) and line ``y``."""
    piece, ent = m.pieces[j], m.entity[j]
    keep = bool(m.text_keep[layer, j])
    ax.text(x, y, piece, ha="center", va="center", fontsize=_FONT,
            family="monospace", color="black" if keep else DROPPED_TEXT,
            fontweight="bold" if ent and keep else "normal",
            fontstyle="italic" if m.special[j] else "normal",
            bbox=dict(boxstyle="round,pad=0.22", fc="white" if keep else DROPPED_FACE,
                      ec=ENTITY_COLOURS.get(ent or "", "#c8c8c8"), lw=1.8 if ent else 0.6))


def _draw_pieces(fig: Any, lay: _Layout, m: TweetMasks) -> None:
    """The word pieces at every BGA layer, each layer labelled with its keep rate."""
    n, t_all = m.num_layers, m.text_keep_rate()
    ax = lay.axes(fig, _LEFT, _TITLE_H + _TOP_H + 0.45, _TEXT_W, lay.text_h)
    ax.set_xlim(0, _CHARS)
    total_lines = n * len(lay.lines) + n * _LAYER_GAP / _LINE_H
    ax.set_ylim(-total_lines + 0.3, 0.7)
    ax.axis("off")
    y = 0.0  # in lines, downwards
    for layer in range(n):
        ax.text(-1.0, y, f"layer {layer + 1}\nkeeps {100 * t_all[layer]:.0f}%", ha="right",
                va="center", fontsize=8, clip_on=False)
        for line in lay.lines:
            xc = 0.0
            for j in line:
                _draw_piece(ax, m, layer, j, xc + len(m.pieces[j]) / 2, y)
                xc += len(m.pieces[j]) + _GAP
            y -= 1.0
        y -= _LAYER_GAP / _LINE_H


def _draw_text_rates(fig: Any, lay: _Layout, m: TweetMasks) -> None:
    """The text keep rate across BGA layers: entity pieces against filler pieces."""
    ax = lay.axes(fig, _WIDTH - _RATE_W - 0.25, _TITLE_H + _TOP_H + 0.45, _RATE_W, 2.0)
    rate_axes(ax, [("entity pieces", m.text_keep_rate("entity"), {"color": "#1f77b4"}),
                   ("filler pieces", m.text_keep_rate("filler"), {"color": "#999999"}),
                   ("all pieces", m.text_keep_rate(), {"color": "black", "ls": "--", "marker": None})],
              "text SCS: keep rate per layer")


def _draw_legend(fig: Any, lay: _Layout, m: TweetMasks) -> None:
    """The entity types' frame colours, and kept against dropped."""
    from matplotlib.patches import Patch

    types = sorted({e for e in m.entity if e})
    handles = [Patch(fc="white", ec=ENTITY_COLOURS[t], lw=1.8, label=f"gold {t} entity") for t in types]
    handles += [Patch(fc="white", ec="#c8c8c8", label="kept"), Patch(fc=DROPPED_FACE, ec="#c8c8c8", label="dropped")]
    fig.legend(handles=handles, loc="lower left", ncol=len(handles), fontsize=8, frameon=False,
               bbox_to_anchor=(_LEFT / _WIDTH, 0.1 / lay.height))


def draw_masks(m: TweetMasks, layer: int = 0, text: str | None = None) -> Any:
    """Fig. 4 for one tweet: what each sampler kept, dropped units greyed out.

    Top: the global image and the object crops as the model saw them, with the patches the visual
    SCS dropped at ``layer`` greyed out, and the visual keep rate across BGA layers (global patches,
    crop patches, all tokens). Bottom: the word pieces at every BGA layer, dropped pieces greyed out,
    each labelled with its layer's keep rate; gold entity pieces are framed in their type's colour.
    Right of them the text keep rate across layers for entity pieces against filler pieces.

    Args:
        m: one tweet's decisions (:func:`~bga_mner.analysis.masks.sampled_masks`).
        layer: the BGA layer (0-based) whose visual decisions are drawn on the images.
        text: the tweet's words for the title (default: its id only).
    """
    lay = _Layout.of(m)
    fig = new_figure(_WIDTH, lay.height)
    _draw_header(fig, lay, m, text)
    _draw_images(fig, lay, m, layer)
    _draw_visual_rates(fig, lay, m, layer)
    _draw_pieces(fig, lay, m)
    _draw_text_rates(fig, lay, m)
    _draw_legend(fig, lay, m)
    return fig


def draw_keep_rates(rates: KeepRates) -> Any:
    """The keep rate of each sampler across BGA layers, pooled over many tweets: entity pieces
    against filler pieces (text), global against crop patches (visual).

    Args:
        rates: the pooled rates (:func:`~bga_mner.analysis.masks.keep_rates`).
    """
    fig = new_figure(10, 3.2)
    left, right = fig.subplots(1, 2)
    rate_axes(left, [("entity pieces", rates.entity, {"color": "#1f77b4"}),
                     ("filler pieces", rates.filler, {"color": "#999999"}),
                     ("all pieces", rates.text, {"color": "black", "ls": "--", "marker": None})],
              f"text SCS over {rates.tweets} test tweets")
    rate_axes(right, [("global patches", rates.global_patches, {"color": "#444444"}),
                      ("crop patches", rates.crop_patches, {"color": "#ff7f0e"}),
                      ("all visual tokens", rates.visual, {"color": "black", "ls": "--", "marker": None})],
              f"visual SCS over {rates.tweets} test tweets")
    fig.tight_layout()
    return fig
