"""PNG plots for people (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

BASE_COLOUR, TUNED_COLOUR = "#8c8c8c", "#2a7ab0"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass(frozen=True)
class BarRow:
    label: str
    base: float
    finetuned: float
    base_ci: tuple[float, float]
    finetuned_ci: tuple[float, float]
    delta_ci: tuple[float, float]
    higher_is_better: bool = True

    def verdict(self) -> str:
        """'better' / 'worse' when the delta's interval excludes 0, else 'n.s.'."""
        low, high = self.delta_ci
        if low <= 0 <= high:
            return "n.s."
        return "better" if (low > 0) == self.higher_is_better else "worse"


def _errors(value: float, ci: tuple[float, float]) -> list[float]:
    return [max(0.0, value - ci[0]), max(0.0, ci[1] - value)]


def _bar_panel(ax, rows: Sequence[BarRow], title: str) -> None:
    x = np.arange(len(rows))
    width = 0.38
    for offset, side, colour, name in ((-width / 2, "base", BASE_COLOUR, "base"),
                                       (width / 2, "finetuned", TUNED_COLOUR, "fine-tuned")):
        values = [getattr(r, side) for r in rows]
        errors = np.array([_errors(getattr(r, side), getattr(r, f"{side}_ci")) for r in rows]).T
        ax.bar(x + offset, values, width, yerr=errors, capsize=3, color=colour, label=name,
               error_kw={"elinewidth": 1, "ecolor": "#333333"})
    top = max(max(r.base_ci[1], r.finetuned_ci[1]) for r in rows)
    for i, row in enumerate(rows):
        verdict = row.verdict()
        colour = {"better": "#1a7f37", "worse": "#c62828"}.get(verdict, "#555555")
        delta = round(row.finetuned - row.base, 1) + 0.0  # + 0.0: no "-0.0"
        ax.annotate(f"Δ {delta:+.1f}\n{verdict}", (i, max(row.base_ci[1], row.finetuned_ci[1])),
                    xytext=(0, 4), textcoords="offset points", ha="center", va="bottom", fontsize=8, color=colour)
    ax.set_xticks(x, [r.label for r in rows], rotation=20, ha="right")
    ax.set_ylim(0, top * 1.25 if top > 0 else 1)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def metric_bars(path: str | Path, panels: Sequence[tuple[str, Sequence[BarRow]]], suptitle: str) -> None:
    """Grouped base/fine-tuned bars per metric with 95% interval error bars, one panel per scale."""
    plt = _pyplot()
    panels = [(title, rows) for title, rows in panels if rows]
    widths = [max(2, len(rows)) for _, rows in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(1.0 * sum(widths) + 2.5, 4.8),
                             gridspec_kw={"width_ratios": widths}, squeeze=False)
    for ax, (title, rows) in zip(axes[0], panels):
        _bar_panel(ax, rows, title)
        if title.startswith("Multiple choice"):
            ax.axhline(25, color="#c62828", linestyle=":", linewidth=1)  # chance with 4 choices
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper right", ncol=2, fontsize=9, frameon=False)
    fig.suptitle(suptitle, fontsize=11)
    fig.text(0.01, 0.01, "Error bars: 95% bootstrap intervals. Δ = fine-tuned − base; better/worse when the "
             "paired interval of Δ excludes 0, n.s. otherwise. Dotted red line: chance (25%) with 4 choices.", fontsize=7, color="#555555")
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def item_distribution(path: str | Path, base: Sequence[float], tuned: Sequence[float], metric: str) -> None:
    """Per-item scores: overlaid histograms, and base vs fine-tuned per item against the diagonal."""
    plt = _pyplot()
    fig, (hist_ax, scatter_ax) = plt.subplots(1, 2, figsize=(10, 4.4))
    from matplotlib.ticker import MaxNLocator

    top = min(100.0, max(10.0, np.ceil(max(list(base) + list(tuned)) / 10) * 10))
    bins = np.linspace(0, top, 21)
    hist_ax.hist(base, bins=bins, alpha=0.6, color=BASE_COLOUR, label=f"base (median {np.median(base):.1f})")
    hist_ax.hist(tuned, bins=bins, alpha=0.6, color=TUNED_COLOUR, label=f"fine-tuned (median {np.median(tuned):.1f})")
    hist_ax.set_xlabel(f"per-item {metric}")
    hist_ax.set_ylabel("test items")
    hist_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    hist_ax.legend(fontsize=8)
    hist_ax.set_title(f"Distribution of per-item {metric}", fontsize=10)
    better = sum(t > b for b, t in zip(base, tuned))
    worse = sum(t < b for b, t in zip(base, tuned))
    scatter_ax.scatter(base, tuned, s=22, color=TUNED_COLOUR, alpha=0.8, edgecolors="white", linewidths=0.5)
    high = max(10.0, max(list(base) + list(tuned)) * 1.05)
    scatter_ax.plot([0, high], [0, high], color="#999999", linestyle="--", linewidth=1)
    scatter_ax.set_xlim(0, high)
    scatter_ax.set_ylim(0, high)
    scatter_ax.set_xlabel(f"base {metric}")
    scatter_ax.set_ylabel(f"fine-tuned {metric}")
    scatter_ax.set_title(f"Per item: {better} above the diagonal (fine-tuned better), {worse} below", fontsize=10)
    for ax in (hist_ax, scatter_ax):
        ax.grid(alpha=0.3)
        ax.set_axisbelow(True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def confusion_png(path: str | Path, matrices: Sequence[tuple[str, list, np.ndarray]], xlabel: str = "predicted",
                  ylabel: str = "actual", suptitle: str = "") -> None:
    """One heat-map per (title, class order, matrix); counts written in the cells."""
    plt = _pyplot()
    side = max(4.2, 0.55 * max(len(labels) for _, labels, _ in matrices) + 2)
    fig, axes = plt.subplots(1, len(matrices), figsize=(side * len(matrices) + 0.6, side), squeeze=False)
    for ax, (title, labels, matrix) in zip(axes[0], matrices):
        ax.imshow(matrix, cmap="Blues", vmin=0)
        ticks = range(len(labels))
        long_names = max(len(str(label)) for label in labels) > 3
        ax.set_xticks(ticks, [str(label) for label in labels], rotation=45 if long_names else 0,
                      ha="right" if long_names else "center", rotation_mode="anchor")
        ax.set_yticks(ticks, [str(label) for label in labels])
        threshold = matrix.max() / 2 if matrix.size else 0
        for (row, col), count in np.ndenumerate(matrix):
            ax.text(col, row, str(count), ha="center", va="center", fontsize=9,
                    color="white" if count > threshold else "black")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


BAR_METRICS = ("chrf", "chrf_pp", "bleu", "rouge_1", "rouge_2", "rouge_l", "token_f1", "exact_match")


def bar_rows(section: dict, keys, labels: dict[str, str], higher_is_better=lambda key: True) -> list[BarRow]:
    ci = section["ci"]
    return [BarRow(labels[k], section["base"][k], section["finetuned"][k],
                   (ci["base"][k]["low"], ci["base"][k]["high"]), (ci["finetuned"][k]["low"], ci["finetuned"][k]["high"]),
                   (ci["delta"][k]["low"], ci["delta"][k]["high"]), higher_is_better(k)) for k in keys]


def evaluation_plots(result: dict, per_item: dict, mc_rows: list[dict], folder: Path) -> list[tuple[Path, str]]:
    """The evaluate stage's PNGs in `folder`: metric bars, per-item chrF, MC answer positions."""
    from pipeline.eval.classification_metrics import confusion
    from pipeline.eval.metrics import SPECS
    from pipeline.eval.multiple_choice import LETTERS
    from pipeline.eval.report import MC_METRICS

    labels = {k: s.label for k, s in SPECS.items()} | {k: label for k, label in MC_METRICS}
    panels = [("Generation (0–100, higher is better)", bar_rows(result, BAR_METRICS, labels)),
              ("Reference perplexity (lower is better)",
               bar_rows(result, ["perplexity"], labels, lambda k: False))]
    if "mc" in result:
        panels.append((f"Multiple choice ({result['mc']['questions']} q., %)",
                       bar_rows(result["mc"], [k for k, _ in MC_METRICS], labels)))
    images = [(folder / "metrics.png", "Base vs fine-tuned per metric with 95% intervals"),
              (folder / "item_chrf.png", "Per-item chrF, base vs fine-tuned")]
    metric_bars(images[0][0], panels, f"Base vs fine-tuned on {result['test_rows']} test items")
    item_distribution(images[1][0], per_item["base"]["chrf"], per_item["finetuned"]["chrf"], "chrF")
    if mc_rows:
        matrices = []
        for side, title in (("base", "base"), ("finetuned", "fine-tuned")):
            order, matrix = confusion([LETTERS[r["answer"]] for r in mc_rows],
                                      [LETTERS[r[f"{side}_pred"]] for r in mc_rows], list(LETTERS))
            matrices.append((f"{title}: acc {result['mc'][side]['acc']:.1f}%", order, matrix))
        images.append((folder / "mc_confusion.png", "Multiple choice: correct vs chosen answer position"))
        confusion_png(images[2][0], matrices, xlabel="chosen answer (acc)", ylabel="correct answer",
                      suptitle="Multiple choice: correct vs chosen answer position (a bias shows as a dark column)")
    return images


SYSTEM_COLOURS = ("#bdbdbd", "#8c8c8c", TUNED_COLOUR)


def system_bars(path: str | Path, result: dict) -> None:
    """Classification: accuracy / macro-F1 / weighted F1 of each system with 95% interval error bars."""
    from pipeline.eval.classification import METRICS, SYSTEMS

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    x = np.arange(len(METRICS))
    width = 0.8 / len(SYSTEMS)
    for n, ((name, label), colour) in enumerate(zip(SYSTEMS, SYSTEM_COLOURS)):
        values = [result["systems"][name][key] for key, _ in METRICS]
        cis = [result["ci"][name][key] for key, _ in METRICS]
        errors = np.array([_errors(v, (ci["low"], ci["high"])) for v, ci in zip(values, cis)]).T
        offset = (n - (len(SYSTEMS) - 1) / 2) * width
        ax.bar(x + offset, values, width, yerr=errors, capsize=3, color=colour, label=label,
               error_kw={"elinewidth": 1, "ecolor": "#333333"})
        for i, value in enumerate(values):
            ax.annotate(f"{value:.1f}", (x[i] + offset, 0), xytext=(0, 2), textcoords="offset points", ha="center",
                        va="bottom", fontsize=7, color="white" if colour == TUNED_COLOUR else "black")
    ax.set_xticks(x, [label for _, label in METRICS])
    ax.set_ylim(0, 105)
    ax.set_ylabel("%")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, loc="upper left", frameon=False)
    ax.set_title(f"Classifiers on {result['test_rows']} test texts ({len(result['labels'])} classes); "
                 "error bars: 95% bootstrap intervals", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def classification_plots(result: dict, items: list[dict], folder: Path) -> list[tuple[Path, str]]:
    """The evaluate stage's PNGs for a classifier: system bars, confusion matrices (fine-tuned, TF-IDF)."""
    from pipeline.eval.classification_metrics import confusion

    labels = result["labels"]
    images = [(folder / "metrics.png", "Fine-tuned classifier vs baselines with 95% intervals"),
              (folder / "confusion.png", "Confusion matrices: fine-tuned classifier and TF-IDF + LR")]
    system_bars(images[0][0], result)
    matrices = []
    for name, title in (("finetuned", "fine-tuned"), ("tfidf_char_lr", "TF-IDF + LR")):
        order, matrix = confusion([it["label"] for it in items], [it[name] for it in items], labels)
        matrices.append((f"{title}: macro-F1 {result['systems'][name]['macro_f1']:.1f}", order, matrix))
    confusion_png(images[1][0], matrices, suptitle="Actual (rows) vs predicted (columns) class")
    return images
