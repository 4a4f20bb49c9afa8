"""What the generation-loss weight alpha leaves each part of BGA-MNER to learn (docs/claims.md).

``python tools/alpha_gradients.py RUN_DIR [RUN_DIR ...] [--batches 4]`` loads each trained BGA-MNER
run (``checkpoints/best.ckpt``), runs its network in training mode on test batches with images,
and prints per component (``models.bga_mner.COMPONENTS``) the gradient norm of the CRF loss
(Eq. 10) and of alpha times the generation terms (Eq. 11's bracket), their ratio, and the share
of non-zero gradient entries below AdamW's eps (1e-8) in size. AdamW divides each update by the
gradient's running RMS, so a part whose only gradient is alpha * L_gen (the generators, the
visual samplers, the visual encoder) takes steps of the same size at any alpha, unless its
gradients sink under eps; a part that also gets the CRF loss's gradient (the text encoder, the
text samplers) is moved by the generation losses in proportion to the ratio printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def gradient_table(run_dir: Path, batches: int = 4) -> str:
    """The markdown table of one run (module docstring).

    Args:
        run_dir: a trained BGA-MNER run folder.
        batches: test batches with images to average the gradients over.
    """
    from lightning.pytorch.utilities import move_data_to_device

    from bga_mner.analysis import load_run
    from bga_mner.models.bga_mner import component_of

    torch.manual_seed(0)
    run = load_run(run_dir)
    system, model = run.system, run.model
    alpha = float(system.alpha)
    model.train()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = {"mner": [torch.zeros_like(p) for _, p in params], "gen": [torch.zeros_like(p) for _, p in params]}
    seen = 0
    for batch in run.datamodule.test_dataloader():
        if seen >= batches:
            break
        if not bool(batch["has_image"].any()):
            continue
        batch = move_data_to_device(batch, "cpu")
        for part in ("mner", "gen"):
            model.zero_grad(set_to_none=True)
            torch.manual_seed(seen)  # the same Gumbel noise and dropout for both parts
            _, parts = system.objective(batch, model(batch, visual=True))
            loss = parts["mner"] if part == "mner" else alpha * parts["auxiliary"]
            loss.backward()
            for acc, (_, p) in zip(grads[part], params, strict=True):
                if p.grad is not None:
                    acc += p.grad / batches
        seen += 1
    rows = {}
    for i, (name, _) in enumerate(params):
        comp = component_of(name)
        r = rows.setdefault(comp, {"mner": 0.0, "gen": 0.0, "tiny": 0, "n": 0})
        r["mner"] += float(grads["mner"][i].pow(2).sum())
        r["gen"] += float(grads["gen"][i].pow(2).sum())
        g = (grads["gen"][i] + grads["mner"][i]).abs()
        r["tiny"] += int(((g > 0) & (g < 1e-8)).sum())  # exact zeros: embeddings of absent words
        r["n"] += int((g > 0).sum())
    lines = [f"{run_dir} (alpha = {alpha:g}, {seen} batches)", "",
             "| component | ‖∇ L_mner‖ | ‖∇ α·L_gen‖ | ratio gen/mner | non-zero entries < 1e-8 |", "|---|---|---|---|---|"]
    for comp, r in rows.items():
        m, g = r["mner"] ** 0.5, r["gen"] ** 0.5
        ratio = "only L_gen" if m == 0 and g > 0 else ("—" if m == 0 else f"{g / m:.3g}")
        lines.append(f"| {comp} | {m:.3g} | {g:.3g} | {ratio} | {100 * r['tiny'] / max(r['n'], 1):.1f}% |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="trained BGA-MNER run folders")
    parser.add_argument("--batches", type=int, default=4, help="test batches with images")
    args = parser.parse_args(argv)
    for run in args.runs:
        print(gradient_table(run, args.batches))
    return 0


if __name__ == "__main__":
    sys.exit(main())
