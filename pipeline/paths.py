"""Where every stage reads and writes, named once (dvc.yaml lists the same paths as deps/outs;
tests/test_layout.py checks that they agree). Relative to the repository root, where DVC runs."""

from __future__ import annotations

from pathlib import Path

# models
BASE_MODEL = Path("models/base")
FINETUNED = Path("models/finetuned")
EXPORT = Path("models/export")
RUN_FILE = "mlflow_run.json"  # in FINETUNED: the model's MLflow run, which evaluate and export attach to
CHECKPOINT_ROOT = Path(".hasat/checkpoints")
# set by pipeline.search for a trial: finetune appends {"step", "val_loss"} per validation to this file,
# which the search reads to prune (outside the experiment's copy, so not a DVC output)
EVAL_LOG_ENV = "HASAT_EVAL_LOG"

# data, stage by stage
INGESTED = Path("data/interim/ingested.jsonl")
CLEANED = Path("data/interim/clean.jsonl")
TOKENIZED = Path("data/processed/tokenized.jsonl")
SPLIT_DIR = Path("data/processed/split")
TRAIN_SPLIT, VAL_SPLIT, TEST_SPLIT = (SPLIT_DIR / f"{name}.jsonl" for name in ("train", "val", "test"))
REJECTS_DIR = Path("data/rejects")


def rejects(stage: str) -> Path:
    """The quarantine file of a data stage: every dropped row with its reason and source."""
    return REJECTS_DIR / f"{stage}.jsonl"


# stats, reports, plots
METRICS_DIR = Path("metrics")


def stats(stage: str) -> Path:
    """The small stats JSON a stage writes (a DVC metric)."""
    return METRICS_DIR / f"{stage}.json"


DATA_STAGES = ("base_model", "ingest", "clean", "tokenize", "split")  # their stats go into the MLflow run
LOSS_DIR = Path("reports/loss")
DATA_REPORT_DIR = Path("reports/data")
DATA_REPORT = DATA_REPORT_DIR / "report.html"  # also an artifact of the model's MLflow run (logged by export)
TOKEN_LENGTHS = DATA_REPORT_DIR / "token_lengths.csv"  # dvc plots: rows per token-length bin, all vs kept
EVAL_DIR = Path("reports/eval")
PREDICTIONS = EVAL_DIR / "predictions.jsonl"
MC_PREDICTIONS = EVAL_DIR / "mc_predictions.jsonl"
REVIEW = EVAL_DIR / "review.html"
ITEM_CHRF = EVAL_DIR / "item_chrf.csv"
PLOTS = EVAL_DIR / "plots"
MC_CONFUSION = {side: EVAL_DIR / f"mc_confusion_{side}.json" for side in ("base", "finetuned")}
CONFUSION = EVAL_DIR / "confusion.json"  # the classifier's actual vs predicted (empty for instruction tuning)
REGISTRY_CACHE = Path(".hasat/registry")  # registered models fetched for serving and promotion (git/DVC-ignored)

# hyperparameter search (pipeline.search; not a DVC stage): the Optuna store and the study's reports
OPTUNA_DB = Path("optuna.db")
SEARCH_DIR = Path("reports/search")
