"""Figures drawn off screen for files, without pyplot: the user's matplotlib backend and figures stay as
they were (``matplotlib.use("Agg")`` at import switched a notebook's or a GUI's plots off once a model
was loaded)."""

from __future__ import annotations

from typing import Any


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None,
             dpi: float | None = None, **kw: Any) -> tuple[Any, Any]:
    """``pyplot.subplots``' ``(figure, axes)``, on a figure of its own with an Agg canvas (for
    ``savefig``; nothing to close: it is freed with its last reference). ``kw``: ``Figure.subplots``'
    (``squeeze``, ``sharex``, ...)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kw)
