"""Headless figures for the analysis tools, without touching matplotlib's global state.

Figures are made with :class:`matplotlib.figure.Figure` and an explicit Agg canvas, never through
``pyplot``: no global backend switch (``matplotlib.use``), no figure registry to leak into, so the
tools work on machines without a display and inside a caller that uses pyplot itself.
"""
import os
import os.path as osp
from typing import Sequence, Tuple

import numpy as np

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def new_figure(figsize: Tuple[float, float] = (6.4, 4.8), dpi: int = 120):
    """A :class:`~matplotlib.figure.Figure` attached to its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str) -> str:
    """Write ``fig`` as a PNG to ``path`` (folders created); return the path."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(path, format='png', bbox_inches='tight')
    return path


def label_colours(num: int) -> np.ndarray:
    """``num`` distinguishable RGBA colours (tab10 / tab20, else evenly spaced on turbo)."""
    from matplotlib import colormaps
    if num <= 10:
        return colormaps['tab10'](np.arange(num))
    if num <= 20:
        return colormaps['tab20'](np.arange(num))
    return colormaps['turbo'](np.linspace(0, 1, num))


def is_png(path: str) -> bool:
    """Whether ``path`` starts with the PNG signature."""
    with open(path, 'rb') as f:
        return f.read(8) == PNG_SIGNATURE


def series_style(index: int, styles: Sequence[str] = ('-', '--', ':', '-.')) -> str:
    """Line style of the ``index``-th series of one group (methods of a checkpoint)."""
    return styles[index % len(styles)]
