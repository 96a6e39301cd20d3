"""Charts as markdown images, so they open in the Dagster UI's metadata panel (no plotting server needed)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

from matplotlib.figure import Figure  # the object API: no global pyplot state, safe in threads and workers

_SIZE = (6.0, 3.2)
_DPI = 100


def training_curve_chart(epochs: Sequence[int], train_loss: Sequence[float], validation_loss: Sequence[float]) -> str:
    figure, axes = _figure()
    axes.plot(epochs, train_loss, marker="o", label="training loss")
    axes.plot(epochs, validation_loss, marker="o", label="validation loss")
    best = min(range(len(validation_loss)), key=validation_loss.__getitem__)
    axes.axvline(epochs[best], color="grey", linestyle=":", label=f"best epoch ({epochs[best]})")
    axes.set(xlabel="epoch", ylabel="log loss", title="Training curve")
    axes.legend()
    return _markdown_image(figure, "training curve")


def calibration_chart(predicted: Sequence[float], observed: Sequence[float], rows: Sequence[int]) -> str:
    figure, axes = _figure()
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    axes.scatter(predicted, observed, s=[max(8.0, 400 * n / max(rows)) for n in rows], label="probability bin")
    axes.set(xlabel="mean predicted probability", ylabel="observed positive rate", title="Calibration")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.legend()
    return _markdown_image(figure, "calibration")


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    title: str,
    xlabel: str,
    threshold: float | None = None,
    highlighted: Sequence[bool] | None = None,
) -> str:
    """Horizontal bars, one per label, red where ``highlighted`` (or at or past ``threshold``): e.g. a drift
    score per feature."""
    figure, axes = _figure(height=max(_SIZE[1], 0.3 * len(labels) + 1))
    if highlighted is None:
        highlighted = [threshold is not None and value >= threshold for value in values]
    axes.barh(list(labels), list(values), color=["tab:red" if flag else "tab:blue" for flag in highlighted])
    if threshold is not None:
        axes.axvline(threshold, color="grey", linestyle=":", label=f"threshold {threshold:g}")
        axes.legend()
    axes.invert_yaxis()
    axes.set(xlabel=xlabel, title=title)
    return _markdown_image(figure, title.lower())


def _figure(height: float = _SIZE[1]):
    figure = Figure(figsize=(_SIZE[0], height), dpi=_DPI, layout="constrained")
    return figure, figure.subplots()


def _markdown_image(figure: Figure, alt: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return f"![{alt}](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"
