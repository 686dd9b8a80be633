"""Plots for the HTML report, rendered off-screen (matplotlib Agg) into base64 PNG strings."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .tables import STAGE_LABELS, STAGES, metric_names  # noqa: E402

COLORS = {"base": "#9e9e9e", "sft": "#4c78a8", "dpo": "#f58518"}
BASELINE_MARKERS = {"majority": ("x", "#444444"), "tfidf_logreg": ("D", "#2ca02c"), "lead_2_sentences": ("^", "#8c564b")}


def to_base64(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def metric_bars(task: dict) -> str | None:
    """One panel per metric: base/SFT/DPO bars with 95% CI error bars; baselines as markers."""
    names = [m for m in metric_names(task) if m != "parse_failure_rate"]
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(2.9 * len(names), 2.8), squeeze=False)
    baselines = task.get("baselines") or {}
    for ax, metric in zip(axes[0], names):
        xs, heights, errs, colors, labels = [], [], [[], []], [], []
        for x, stage in enumerate(STAGES):
            m = task["stages"].get(stage, {}).get("metrics", {}).get(metric)
            if not m:
                continue
            xs.append(x)
            heights.append(m["value"])
            low, high = m.get("ci_low", m["value"]), m.get("ci_high", m["value"])
            errs[0].append(max(0.0, m["value"] - low))
            errs[1].append(max(0.0, high - m["value"]))
            colors.append(COLORS[stage])
            labels.append(STAGE_LABELS[stage])
        ax.bar(xs, heights, yerr=errs, color=colors, capsize=4, width=0.65)
        ax.set_xticks(range(len(STAGES)), [STAGE_LABELS[s] for s in STAGES])
        for name, values in baselines.items():
            if metric in values and values[metric] is not None:
                marker, color = BASELINE_MARKERS.get(name, ("o", "black"))
                ax.axhline(values[metric], color=color, linestyle=":", linewidth=1)
                ax.plot([2.55], [values[metric]], marker=marker, color=color, label=name, clip_on=False)
        top = 5.0 if metric == "likert" else 1.0
        ax.set_ylim(1.0 if metric == "likert" else 0.0, top * 1.05)
        ax.set_title(metric, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        if metric == names[-1] and baselines and any(metric in v for v in baselines.values()):
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), title="baselines", title_fontsize=7)
    fig.tight_layout()
    return to_base64(fig)


def confusion_plot(stages: dict, head: str) -> str | None:
    """The head's confusion matrix for each stage side by side (rows gold, columns predicted)."""
    mats = [(s, stages[s]["confusion"][head]) for s in STAGES
            if head in (stages.get(s, {}).get("confusion") or {})]
    if not mats:
        return None
    k = len(mats[0][1]["labels"])
    fig, axes = plt.subplots(1, len(mats), figsize=(1.0 + (0.75 * k + 1.4) * len(mats), 0.6 * k + 1.6), squeeze=False)
    for ax, (stage, conf) in zip(axes[0], mats):
        matrix = conf["matrix"]
        ax.imshow(matrix, cmap="Blues", vmin=0)
        peak = max((v for row in matrix for v in row), default=0) or 1
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                        color="white" if v > 0.6 * peak else "black")
        ax.set_xticks(range(len(conf["columns"])), conf["columns"], rotation=40, ha="right", fontsize=7)
        ax.set_yticks(range(len(conf["labels"])), conf["labels"], fontsize=7)
        ax.set_title(f"{STAGE_LABELS[stage]}", fontsize=9)
        ax.set_xlabel("predicted", fontsize=7)
    axes[0][0].set_ylabel("gold", fontsize=7)
    fig.suptitle(head, fontsize=9)
    fig.tight_layout()
    return to_base64(fig)
