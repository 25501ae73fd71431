"""Labels placed at draw time, when their sizes in pixels are known.

A label's room depends on the figure's final layout (constrained layout moves the axes after the
labels are made) and, in an interactive figure, on the current zoom. A ``LabelPlacer`` is an
invisible artist drawn just before its labels (its zorder) that moves them where they fit; it
takes no room in the layout, and is drawn again, placing them again, at every redraw.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backend_bases import RendererBase
from matplotlib.text import Text
from matplotlib.transforms import Bbox


class LabelPlacer(Artist):
    """Places ``labels`` at each draw (``place``, in a subclass), before they are drawn."""

    def __init__(self, labels: Sequence[Text]) -> None:
        super().__init__()
        self.labels = list(labels)
        self.set_zorder(min(label.get_zorder() for label in labels) - 0.01)
        self.set_in_layout(False)

    def draw(self, renderer: RendererBase) -> None:
        ax = self.axes
        if isinstance(ax, Axes):  # an artist's axes, once it is added to one (Artist.axes says _AxesBase)
            self.place(ax, ax.get_window_extent(renderer), renderer)
        self.stale = False

    def place(self, ax: Axes, frame: Bbox, renderer: RendererBase) -> None:
        """Move the labels where they fit in ``frame``, the axes' extent in pixels."""
        raise NotImplementedError
