"""Fig. 3 drawn: retrieval recall@k against chance (:func:`draw_retrieval`), and the similarity of
generated against real visual features for a few test tweets (:func:`draw_similarity`)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from bga_mner.analysis.alignment import Retrieval
from bga_mner.analysis.plots import new_figure


def _recall_curves(ax: Any, result: Retrieval, ks: Sequence[int]) -> None:
    """Recall@k for k in ``ks``: each BGA layer alone, the scored similarity, and chance."""
    import matplotlib
    import matplotlib.ticker

    n_layers = result.layer_similarity.shape[0]
    colours = matplotlib.colormaps["viridis"]
    for layer in range(n_layers):
        ax.plot(ks, [100 * r for r in result.recall_curve(ks, layer)], lw=1,
                color=colours(layer / max(1, n_layers - 1)), label=f"layer {layer + 1}")
    ax.plot(ks, [100 * r for r in result.recall_curve(ks)], lw=2.5, color="black",
            label=f"scored ({result.layer})")
    ax.plot(ks, [100 * r for r in result.chance_curve(ks)], lw=1.5, ls="--", color="#d62728",
            label="chance k/n")
    ax.set_xlabel("k")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("recall@k (%)")
    ax.set_title(f"paired image among the k most similar (n = {result.n} test images)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)


def _recall_bars(ax: Any, result: Retrieval) -> None:
    """Recall@1 and @5 per BGA layer and of the scored similarity, chance as dashed lines."""
    n_layers = result.layer_similarity.shape[0]
    labels = [f"layer {i + 1}" for i in range(n_layers)] + [f"scored\n({result.layer})"]
    r1 = [result.recall_curve([1], i)[0] for i in range(n_layers)] + [result.recall_at_1]
    r5 = [result.recall_curve([5], i)[0] for i in range(n_layers)] + [result.recall_at_5]
    xs = torch.arange(len(labels)).float()
    ax.bar(xs - 0.2, [100 * v for v in r1], 0.4, label="recall@1", color="#1f77b4")
    ax.bar(xs + 0.2, [100 * v for v in r5], 0.4, label="recall@5", color="#ff7f0e")
    ax.axhline(100 * result.chance_at_1, color="#1f77b4", ls="--", lw=1, label="chance@1")
    ax.axhline(100 * result.chance_at_5, color="#ff7f0e", ls="--", lw=1, label="chance@5")
    ax.set_xticks(xs.tolist(), labels, fontsize=8)
    ax.set_ylabel("recall (%)")
    ax.set_title("recall@1 and @5 per BGA layer", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")


def draw_retrieval(result: Retrieval, max_k: int = 20) -> Any:
    """Fig. 3 as a plot: retrieval recall@k against chance. Left: recall@k for k = 1..max_k of
    each BGA layer alone and of the scored similarity (``result.layer``); right: recall@1 and
    recall@5 per layer, with chance as dashed lines.

    Args:
        result: the retrieval (:func:`~bga_mner.analysis.alignment.retrieval_from_features`).
        max_k: the largest k of the left plot (at most n).
    """
    if result.layer_similarity is None:
        raise ValueError("the Retrieval holds no per-layer similarity (use retrieval_from_features)")
    ks = list(range(1, min(max_k, result.n) + 1))
    fig = new_figure(12, 3.8)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1]})
    _recall_curves(left, result, ks)
    _recall_bars(right, result)
    fig.tight_layout()
    return fig


def draw_similarity(result: Retrieval, rows: int = 8, texts: Mapping[str, str] | None = None) -> Any:
    """The similarity of generated (rows: from each tweet's text alone) against real (columns:
    each image) visual features for the first ``rows`` test tweets; the paired image is framed,
    and each row says the rank of its paired image among all n test images.

    Args:
        result: the retrieval, with its similarity matrix.
        rows: how many test tweets (and images) to show.
        texts: the words of each tweet id, for the row labels (default: the ids).
    """
    from matplotlib.patches import Rectangle

    if result.similarity is None:
        raise ValueError("the Retrieval holds no similarity matrix")
    m = min(rows, result.n)
    sim = result.similarity  # (n, n)
    block = sim[:m, :m]
    rank = ((sim >= sim.diagonal().unsqueeze(1)).sum(1)).tolist()  # 1 = first (ties count against)
    fig = new_figure(6.6 + 0.55 * m, 1.8 + 0.5 * m)
    ax = fig.add_subplot()
    bound = float(block.abs().max()) or 1.0
    image = ax.imshow(block.numpy(), cmap="RdBu_r", vmin=-bound, vmax=bound)
    for i in range(m):
        for j in range(m):
            ax.text(j, i, f"{block[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if abs(float(block[i, j])) > 0.6 * bound else "black")
        ax.add_patch(Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, ec="black", lw=2))

    def label(i: int) -> str:
        words = (texts or {}).get(result.ids[i], "")
        words = words if len(words) <= 38 else words[:35] + "..."
        return f"{words or result.ids[i]}  (paired: rank {rank[i]}/{result.n})"

    ax.set_yticks(range(m), [label(i) for i in range(m)], fontsize=8)
    ax.set_xticks(range(m), [result.ids[j] for j in range(m)], rotation=45, ha="right", fontsize=8)
    ax.set_xlabel("real visual features of image")
    ax.set_ylabel("generated from the tweet's text")
    ax.set_title("cosine(generated, real); framed: the tweet's own image", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    fig.tight_layout()
    return fig
