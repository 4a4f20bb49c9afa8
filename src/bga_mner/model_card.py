"""The model card (``README.md``) of an exported model, generated from the run's ``results.json``.

``huggingface_hub``'s ``ModelCard.from_template`` fills ``resources/model_card.md`` (a Jinja
template) and writes the metadata block from ``ModelCardData``: language, license, library, tags and
the test scores as ``model-index`` evaluation results (``EvalResult``: F1, precision, recall, F1
per type), which the Hub shows beside the model. The 95% interval of the test F1 is the report's
bootstrap over test tweets (``report.bootstrap.bootstrap_ci`` on the run's
``predictions/test_counts.json``), so the card and ``bga-mner report`` give the same numbers.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from omegaconf import OmegaConf

from bga_mner.data.conll import ENTITY_TYPES, LABELS

# the data sets' names and what is known of their tweets' period (the cards' "training data's period")
DATASETS: dict[str, tuple[str, str, str]] = {
    "twitter2015": ("Twitter-2015", " (Zhang et al., AAAI 2018)",
                    "The tweets of Twitter-2015 were collected for Zhang et al. (AAAI 2018), so they "
                    "predate 2018."),
    "twitter2017": ("Twitter-2017", " (Lu et al., ACL 2018)",
                    "The tweets of Twitter-2017 were collected for Lu et al. (ACL 2018), so they "
                    "predate 2018."),
    "synthetic": ("the synthetic benchmark", " (`bga-mner synth`, generated from the config below)",
                  "The synthetic tweets are generated from templates and name lists: no period."),
}
GROUPS = ("overall",) + ENTITY_TYPES


def _dataset(name: str | None) -> tuple[str, str, str]:
    return DATASETS.get(str(name), (str(name), "", "Unknown for this data set: see its documentation."))


def _pct(value: Any) -> str:
    return "—" if value is None else f"{float(value):.2f}"


def test_f1_interval(run_dir: str | Path) -> tuple[float, float, int] | None:
    """The 95% bootstrap interval of a run's test F1 over its test tweets (``report.bootstrap``)
    and the number of those tweets, or None when the run has no ``predictions/test_counts.json``."""
    from bga_mner.report.bootstrap import bootstrap_ci
    from bga_mner.report.statistics import read_counts

    counts = read_counts(run_dir)
    return None if counts is None else (*bootstrap_ci(counts), len(counts))


def eval_results(results: Mapping[str, Any], dataset_name: str) -> list[EvalResult]:
    """The card's ``model-index`` entries: test precision, recall and F1, and F1 per type."""
    task = dict(task_type="token-classification", task_name="Named entity recognition",
                dataset_type=str(results.get("test_dataset") or results.get("dataset")),
                dataset_name=dataset_name, dataset_split="test")
    test = results["test"]
    out = [EvalResult(metric_type=m, metric_name=f"test {m} (entity, micro)",
                      metric_value=round(float(test["overall"][m]), 2), **task)
           for m in ("f1", "precision", "recall")]
    out += [EvalResult(metric_type="f1", metric_name=f"test F1 {t}", metric_value=round(float(test[t]["f1"]), 2),
                       **task) for t in ENTITY_TYPES if t in test]
    return out


def build_card(results: Mapping[str, Any], run_dir: str | Path, config: Mapping[str, Any]) -> ModelCard:
    """The model card of an exported run.

    Args:
        results: the run's ``results.json``.
        run_dir: the run folder (for ``predictions/test_counts.json``, the CI).
        config: the exported ``config.json`` (the network's settings).
    """
    run_cfg = results["config"]  # the whole merged config: every key is there
    model_cfg = config["model"]
    kind = "BGA-MNER" if model_cfg["use_mcg"] else "BERT-CRF"
    dataset, dataset_note, period = _dataset(results.get("dataset"))
    test_dataset = _dataset(results.get("test_dataset") or results.get("dataset"))[0]
    ci = test_f1_interval(run_dir)
    data_cfg = run_cfg["data"]
    profile = str(results.get("profile"))
    card_data = ModelCardData(
        model_name=f"{kind} ({model_cfg['text_encoder']}, {dataset}, seed {results.get('seed')})",
        language="en", license="mit", library_name="bga-mner", pipeline_tag="token-classification",
        tags=["named-entity-recognition", "twitter", "multimodal-ner", "bga-mner", kind.lower()],
        metrics=["f1", "precision", "recall"], eval_results=eval_results(results, test_dataset))
    test = results["test"]
    rows = [{"group": group, **{m: _pct(test[group][m]) for m in ("precision", "recall", "f1")}}
            for group in GROUPS if group in test]
    versions = results.get("versions") or {}
    return ModelCard.from_template(
        card_data, template_str=resources.files("bga_mner").joinpath("resources/model_card.md").read_text("utf-8"),
        title=f"{kind} for tweets: {model_cfg['text_encoder']}, {dataset}", kind=kind,
        repo_url="https://github.com/bga-mner/bga-mner", types=", ".join(ENTITY_TYPES),
        synthetic=results.get("dataset") == "synthetic", smoke=profile == "smoke",
        dataset=dataset, dataset_note=dataset_note, test_dataset=test_dataset,
        best_epoch=results.get("best_epoch"), n_labels=len(LABELS), labels=" ".join(LABELS),
        type_map=dict(data_cfg["type_map"]), max_length=config["max_length"],
        seeds=f"seed {results.get('seed')}, one run", score_rows=rows,
        test_f1=_pct(test["overall"]["f1"]),
        ci="—" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]",
        ci_note=("the run has no per-tweet counts" if ci is None
                 else f"percentile bootstrap over the {ci[2]} test tweets"),
        dev_f1=_pct(((results.get("dev") or {}).get("overall") or {}).get("f1")),
        text_encoder=model_cfg["text_encoder"], visual_encoder=model_cfg["visual_encoder"],
        run=results.get("run"), experiment=results.get("experiment"), profile=profile,
        git_commit=results.get("git_commit") or "unknown",
        seconds_per_epoch=("—" if results.get("seconds_per_epoch") is None
                           else f"{float(results['seconds_per_epoch']):.0f}"),
        versions=", ".join(f"{k} {v}" for k, v in versions.items()) or "versions unknown",
        config_yaml=OmegaConf.to_yaml(OmegaConf.create(dict(run_cfg))) if run_cfg else "{}\n",
        period=period)
