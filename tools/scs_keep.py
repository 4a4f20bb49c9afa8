"""What the Stage-refined Context Samplers keep in training and at evaluation, and what drives them
(docs/implementation_notes.md, "Evaluation keeps the ρ share").

``python tools/scs_keep.py RUN_DIR [RUN_DIR ...] [--draws 3] [--batches 4]`` loads each trained
BGA-MNER run (``checkpoints/best.ckpt``) and, over its test tweets with an image, prints per BGA
layer and sampler:

* the share of units a training draw keeps (samplers in training mode, the rest in evaluation mode
  so that no dropout moves their inputs; ``--draws`` Gumbel draws): what the keep-ratio loss holds
  near rho;
* evaluation under the rule up to d6a749f, the argmax (keep the units with keep probability
  p >= 0.5): the keep probabilities (mean, 5th and 95th percentile) and the share kept;
* the share kept at evaluation now (the rho share of most probable units, ``sampler.top_share``).

Then, in training mode on ``--batches`` test batches with images, the loss terms (L_mner,
alpha * (L_recon + L_cycle), alpha * ratio_weight * L_keep) and the gradient norm each sends to the
text and to the visual samplers' parameters (one forward pass, the same Gumbel draw for all three).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from pathlib import Path

import torch

BRANCHES = ("text", "visual")


def _units(model, batch: dict) -> dict[str, torch.Tensor]:
    """(B, N) bool per branch: the real units of the tweets with an image."""
    image = batch["has_image"].bool().unsqueeze(1)  # (B, 1)
    return {"text": batch["attention_mask"].bool() & image,
            "visual": model.visual_embed.token_mask(batch["crop_mask"]) & image}


def _masks(out) -> dict[str, list[torch.Tensor]]:
    return {"text": out.text_masks, "visual": out.visual_masks}


@contextlib.contextmanager
def argmax_rule():
    """Evaluation by the rule up to d6a749f: each sampler keeps the units with keep probability
    p >= 0.5 (its argmax), however many (``sampler.top_share`` replaced while inside)."""
    from bga_mner.models import sampler

    rho_share = sampler.top_share
    sampler.top_share = lambda scores, valid, share: scores >= math.log(0.5)  # (B, N) log p_keep
    try:
        yield
    finally:
        sampler.top_share = rho_share


def keep_statistics(run, draws: int = 3) -> dict[str, list[dict[str, float]]]:
    """Per branch, per BGA layer: ``drawn``, ``mean_p``, ``p05``, ``p95``, ``argmax`` and ``kept``
    (module docstring) over the run's test tweets with an image.

    Args:
        run: an ``analysis.LoadedRun`` of a BGA-MNER run with samplers.
        draws: training-mode Gumbel draws per tweet.
    """
    model = run.model
    samplers = {"text": list(model.text_samplers), "visual": list(model.visual_samplers)}
    probs: dict[int, torch.Tensor] = {}

    def record(module, args, output):  # the sampler's keep probability of every unit
        probs[id(module)] = module.logits(args[0], args[1])[..., module.KEEP].exp()

    N = model.num_bga_layers
    acc = {b: [{"units": 0, "argmax": 0, "kept": 0, "drawn": [0, 0], "p": []} for _ in range(N)] for b in BRANCHES}
    batches = [b for b in run.datamodule.test_dataloader() if bool(b["has_image"].any())]
    model.eval()
    with torch.no_grad():
        for batch in batches:
            units = _units(model, batch)
            hooks = [s.register_forward_hook(record) for b in BRANCHES for s in samplers[b]]
            try:
                with argmax_rule():
                    argmax = _masks(model(batch, visual=True))
            finally:
                for h in hooks:
                    h.remove()
            kept = _masks(model(batch, visual=True))
            for b in BRANCHES:
                for l in range(N):
                    a, u = acc[b][l], units[b]
                    a["units"] += int(u.sum())
                    a["argmax"] += int(argmax[b][l][u].sum())
                    a["kept"] += int(kept[b][l][u].sum())
                    a["p"].append(probs[id(samplers[b][l])][u])
        for s in (s for b in BRANCHES for s in samplers[b]):
            s.train()
        try:
            for seed in range(draws):
                torch.manual_seed(seed)
                for batch in batches:
                    out, units = model(batch, visual=True), _units(model, batch)
                    for b in BRANCHES:
                        for l, mask in enumerate(_masks(out)[b]):
                            acc[b][l]["drawn"][0] += int(mask[units[b]].sum())
                            acc[b][l]["drawn"][1] += int(units[b].sum())
        finally:
            model.eval()
    stats = {}
    for b in BRANCHES:
        stats[b] = []
        for a in acc[b]:
            p = torch.cat(a["p"])
            p05, p95 = torch.quantile(p.double(), torch.tensor([0.05, 0.95], dtype=torch.float64)).tolist()
            stats[b].append({"drawn": a["drawn"][0] / a["drawn"][1], "mean_p": float(p.mean()), "p05": p05,
                             "p95": p95, "argmax": a["argmax"] / a["units"],
                             "kept": a["kept"] / a["units"]})
    return stats


def loss_gradients(run, batches: int = 4) -> dict[str, float]:
    """The loss terms and the gradient norm each sends to each branch's samplers (module docstring),
    averaged over ``batches`` test batches with images, in training mode."""
    system, model = run.system, run.model
    params = {b: [p for s in getattr(model, f"{b}_samplers") for p in s.parameters()] for b in BRANCHES}
    alpha, weight = float(system.alpha), float(system.ratio_weight)
    rows: list[dict[str, float]] = []
    model.train()
    try:
        for i, batch in enumerate(b for b in run.datamodule.test_dataloader() if bool(b["has_image"].any())):
            if i >= batches:
                break
            torch.manual_seed(i)
            _, parts = system.objective(batch, model(batch, visual=True))
            terms = {"L_mner": parts["mner"], "α·(L_recon + L_cycle)": alpha * (parts["recon"] + parts["cycle"]),
                     "α·ratio_weight·L_keep": alpha * weight * parts["keep_ratio"]}
            row = {name: float(t.detach()) for name, t in terms.items()}
            for name, t in terms.items():
                for b in BRANCHES:
                    grads = torch.autograd.grad(t, params[b], retain_graph=True, allow_unused=True)
                    square = sum(float(g.pow(2).sum()) for g in grads if g is not None)
                    row[f"{b} samplers ← {name}"] = square ** 0.5
            rows.append(row)
    finally:
        model.eval()
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}


def keep_report(run_dir: Path, draws: int = 3, batches: int = 4) -> str:
    """The markdown report of one run (module docstring)."""
    from bga_mner.analysis import load_run

    torch.set_num_threads(1)
    run = load_run(run_dir)
    if not (run.model.use_mcg and run.model.use_scs):
        raise SystemExit(f"{run_dir}: no samplers (model.use_mcg and model.use_scs must be true)")
    stats = keep_statistics(run, draws)
    rho = run.model.keep_ratio
    lines = [f"{run_dir} (rho = {rho}, alpha = {run.system.alpha:g}, "
             f"ratio_weight = {run.system.ratio_weight:g}; test tweets with an image; {draws} training draws)", "",
             "| BGA layer | sampler | training draws keep | argmax rule: mean p (5th–95th pct.) | argmax rule: kept "
             "| kept at evaluation (ρ share) |",
             "|---|---|---|---|---|---|"]
    for l in range(run.model.num_bga_layers):
        for b in BRANCHES:
            s = stats[b][l]
            lines.append(f"| {l + 1} | {b} | {100 * s['drawn']:.1f}% | {s['mean_p']:.3f} "
                         f"({s['p05']:.3f}–{s['p95']:.3f}) | {100 * s['argmax']:.1f}% | {100 * s['kept']:.1f}% |")
    grads = loss_gradients(run, batches)
    lines += ["", f"training mode, {batches} test batches with images: "
              + ", ".join(f"{k} {v:.4g}" for k, v in grads.items() if "←" not in k),
              "gradient norm over the samplers' parameters: "
              + ", ".join(f"{k} {v:.2g}" for k, v in grads.items() if "←" in k)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="trained BGA-MNER run folders")
    parser.add_argument("--draws", type=int, default=3, help="training-mode Gumbel draws per tweet")
    parser.add_argument("--batches", type=int, default=4, help="test batches with images for the gradients")
    args = parser.parse_args(argv)
    for run in args.runs:
        print(keep_report(run, args.draws, args.batches))
    return 0


if __name__ == "__main__":
    sys.exit(main())
