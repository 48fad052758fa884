"""Promote the registered `challenger` to `champion` when it wins on the test split.

    python -m pipeline.promote [--force] [key=value ...]      # make promote

Both models (`models:/hasat-<data.name>@champion` and `@challenger`, as `export` registered them)
answer the test split (data/processed/split/test.jsonl) in this one run; the alias moves only when
the paired bootstrap interval of challenger − champion on chrF (instruction tuning) or macro-F1
(classification) lies above zero. The first registered model becomes champion. The comparison
table and the decision go to stdout and into the registry (version tags and description);
`--force` promotes regardless and says so in the record. A replaced champion keeps the alias
`previous_champion` and a tag naming its successor.
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial

from pipeline import paths
from pipeline.config import HasatConfig
from pipeline.config_loader import load_config
from pipeline.deploy import models, promotion
from pipeline.errors import HasatError
from pipeline.io import read_jsonl
from pipeline.stages._runner import _quiet_libraries
from pipeline.tasks.reporting import report_for
from pipeline.tracking import record_promotion, registered_version, registry_name

log = logging.getLogger("hasat")


def promote(cfg: HasatConfig, force: bool = False) -> promotion.Decision | None:
    """Compare, decide, record; returns the decision (None when there was nothing to decide)."""
    name = registry_name(cfg)
    challenger = registered_version(cfg, name, "challenger")
    if challenger is None:
        raise HasatError(f"no version of '{name}' has the alias challenger: run the export stage first "
                         "(export.log_model and registry.enabled true)")
    champion = registered_version(cfg, name, "champion")
    version = challenger["version"]
    if champion is None:
        reason = f"first registered model of '{name}': version {version} becomes champion without a comparison"
        record_promotion(cfg, name, version, {"hasat.promotion": "promoted (first model)"}, reason, promote=True)
        print(reason)
        return None
    if champion["version"] == version:
        print(f"'{name}' version {version} is already champion and challenger: nothing to decide")
        return None
    task = report_for(cfg.task.kind)
    rows = read_jsonl(paths.TEST_SPLIT) if paths.TEST_SPLIT.is_file() else []
    if not rows:
        raise HasatError(f"{paths.TEST_SPLIT}: no test items to compare the models on (run the pipeline first)")
    rows = rows[: cfg.eval.max_examples] if cfg.eval.max_examples else rows
    names = (f"champion v{champion['version']}", f"challenger v{version}")
    compare = promotion.compare_classifiers if task.kind == "classification" else promotion.compare_sft
    comparison = compare(partial(models.load, cfg, f"models:/{name}/{champion['version']}"),
                         partial(models.load, cfg, f"models:/{name}/{version}"), rows, cfg, names)
    decision = promotion.decide(comparison, task.promotion_metric, _label(task.promotion_metric))
    promote_it = decision.promote or force
    if force and not decision.promote:
        decision.reason = f"FORCED (--force) against the rule; the rule said: {decision.reason}"
    record_promotion(cfg, name, version, record_tags(decision, champion["version"], force), description(decision),
                     promote=promote_it, previous=champion["version"])
    print(decision.table)
    print(f"\n'{name}': {decision.reason}")
    return decision


def _label(metric: str) -> str:
    return {"chrf": "chrF", "macro_f1": "macro-F1"}.get(metric, metric)


def record_tags(decision: promotion.Decision, champion: str, force: bool) -> dict[str, str]:
    ci = decision.interval()
    state = ("promoted (forced)" if force and not decision.promote else
             "promoted" if decision.promote else "not promoted")
    return {"hasat.promotion": state, "hasat.promotion.vs_champion": champion,
            "hasat.promotion.metric": decision.metric,
            "hasat.promotion.delta": f"{decision.comparison['delta'][decision.metric]:+.2f}",
            "hasat.promotion.ci_low": f"{ci['low']:+.2f}", "hasat.promotion.ci_high": f"{ci['high']:+.2f}",
            "hasat.promotion.items": str(decision.comparison["items"]), "hasat.promotion.forced": str(force).lower()}


def description(decision: promotion.Decision) -> str:
    return f"{decision.reason}\n\n```\n{decision.table}\n```\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.promote", description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="promote even when the rule says no (recorded)")
    parser.add_argument("overrides", nargs="*", help="config overrides, key=value")
    args = parser.parse_args(argv)
    _quiet_libraries()
    try:
        promote(load_config(args.overrides), force=args.force)
    except HasatError as err:
        print(f"hasat promote: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
