"""The paper's Figures 1-2 from run folders: one PNG per model, one colour per loss, and the
loss-accuracy discrepancy of hard vs soft cross-entropy in one figure.

matplotlib's object API (Figure + Agg canvas on savefig), not pyplot: no global figure state, no
display needed, and it is imported only when a figure is drawn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vqa.io import atomic_path
from vqa.report.runs import Run, ordered

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
FIGURE_CURVES = (  # (metrics key, line style, label, right axis)
    ("train/loss", "--", "train loss", False),
    ("val/loss", "-", "val loss", False),
    ("val/accuracy", ":", "val accuracy", True),
)


def _mean_band(group: list[Run], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(epochs, mean, min, max) of `key` over the runs of `group`, at the epochs any of them has."""
    epochs = np.unique(np.concatenate([r.epochs for r in group]))
    values = np.full((len(group), len(epochs)), np.nan)  # [runs, epochs]
    for i, r in enumerate(group):
        values[i, np.searchsorted(epochs, r.epochs)] = r.series(key)
    ok = np.isfinite(values).any(0)
    v = values[:, ok]
    return epochs[ok], np.nanmean(v, 0), np.nanmin(v, 0), np.nanmax(v, 0)


def plot_model(runs: list[Run], model: str, colors: dict[str, str], path: Path) -> None:
    """The paper's Figures 1-2 for one model: train loss dashed and val loss solid (left axis), val
    accuracy dotted (right axis), one colour per loss; mean over seeds with a light min-max band."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    ax2 = ax.twinx()
    counts, handles = [], {}
    losses = ordered(r.arm for r in runs if r.model == model)
    for loss in losses:
        group = [r for r in runs if r.model == model and r.arm == loss]
        counts.append(f"{loss} n={len(group)}")
        for key, style, label, right in FIGURE_CURVES:
            axis = ax2 if right else ax
            epochs, mean, lo, hi = _mean_band(group, key)
            (handles[f"{loss} {label}"],) = axis.plot(epochs, mean, style, color=colors[loss], lw=1.8)
            if len(group) > 1:
                axis.fill_between(epochs, lo, hi, color=colors[loss], alpha=0.12, lw=0)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss")
    ax2.set_ylabel("validation accuracy (%)")
    ax.set_title(
        f"{model.upper()}: train loss (dashed), val loss (solid), val accuracy (dotted)\n"
        f"mean over seeds ({', '.join(counts)}); band: min-max",
        fontsize=9,
    )
    # legend: one row per loss (matplotlib fills columns first)
    labels = [f"{loss} {label}" for _, _, label, _ in FIGURE_CURVES for loss in losses]
    fig.legend([handles[k] for k in labels], labels, fontsize=7, ncol=3, loc="lower center", frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout(rect=(0, 0.01 + 0.035 * len(losses), 1, 1))  # room for the legend below
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")  # the temporary name ends in .tmp: say the format


DISCREPANCY_ARMS = ("hard_ce", "soft_ce")


def _discrepancy_column(runs: list[Run], model: str, colors: dict[str, str], top, bottom) -> None:
    """One model's column of `plot_discrepancy`: the validation losses (top) and accuracy (bottom)."""
    from matplotlib.ticker import MaxNLocator

    counts = []
    for arm in DISCREPANCY_ARMS:
        group = [r for r in runs if r.model == model and r.arm == arm]
        counts.append(f"{arm} n={len(group)}")
        curves = [("val/loss", "-", top, f"{arm}: val loss (its own)")]
        if arm != "hard_ce":
            curves.append(("val/hard_ce", "--", top, f"{arm}: val hard cross-entropy"))
        curves.append(("val/accuracy", "-", bottom, f"{arm}: val accuracy"))
        for key, style, ax, label in curves:
            epochs, mean, lo, hi = _mean_band(group, key)
            ax.plot(epochs, mean, style, color=colors[arm], lw=1.6, label=label)
            if len(group) > 1:
                ax.fill_between(epochs, lo, hi, color=colors[arm], alpha=0.12, lw=0)
            best = int(np.argmax(mean) if key == "val/accuracy" else np.argmin(mean))
            marker = "^" if key == "val/accuracy" else "o"
            ax.plot(epochs[best], mean[best], marker, color=colors[arm], ms=6)
    top.set_title(f"{model.upper()} ({', '.join(counts)})", fontsize=9)
    top.set_ylabel("validation loss")
    bottom.set_ylabel("validation accuracy (%)")
    bottom.set_xlabel("epoch")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (top, bottom):
        ax.grid(alpha=0.3)


def plot_discrepancy(runs: list[Run], models: list[str], colors: dict[str, str], path: Path) -> bool:
    """The loss-accuracy discrepancy of the paper's Figures 1-2, hard vs soft cross-entropy: per model
    (columns) the validation loss (top: each arm's own loss solid, soft_ce's runs also on the hard
    cross-entropy, dashed, the one scale of both) and the validation accuracy (bottom) over epochs, mean
    over seeds with a min-max band; a circle marks the epoch of the lowest mean loss, a triangle that of
    the best mean accuracy. False (nothing written) when no model has both arms."""
    from matplotlib.figure import Figure

    models = [
        m for m in models if all(any(r.model == m and r.arm == a for r in runs) for a in DISCREPANCY_ARMS)
    ]
    if not models:
        return False
    fig = Figure(figsize=(max(7.0, 4.2 * len(models) + 0.8), 6.8))
    axes = fig.subplots(2, len(models), squeeze=False, sharex="col")
    for col, model in enumerate(models):
        _discrepancy_column(runs, model, colors, axes[0, col], axes[1, col])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    more, more_labels = axes[1, 0].get_legend_handles_labels()
    fig.legend(handles + more, labels + more_labels, fontsize=7, ncol=2, loc="lower center", frameon=False)
    fig.suptitle(
        "Loss-accuracy discrepancy, hard vs soft cross-entropy\nmean over seeds, band min-max; "
        "o: lowest mean loss, ^: best mean accuracy",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    return True


def write_figures(runs: list[Run], models: list[str], out: Path) -> list[str]:
    """figure_<model>.png in `out` for each model, a loss keeping its colour across models, and
    discrepancy.png (`plot_discrepancy`) where a model has hard_ce and soft_ce runs; the names."""
    colors = {loss: PALETTE[i % len(PALETTE)] for i, loss in enumerate(ordered(r.arm for r in runs))}
    names = [f"figure_{m}.png" for m in models]
    for m, name in zip(models, names):
        plot_model(runs, m, colors, out / name)
    if plot_discrepancy(runs, models, colors, out / "discrepancy.png"):
        names.append("discrepancy.png")
    return names
