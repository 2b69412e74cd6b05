"""The ``avssl overlay --png`` contact sheet's layout: no time label over another row's frame."""

from __future__ import annotations

import numpy as np
import pytest

from avssl.tools.overlay_sheet import sheet_figure


@pytest.mark.parametrize("shape", [(224, 224), (120, 400), (400, 120), (77, 101)])
@pytest.mark.parametrize("title", ["clip.mp4", ""])
def test_time_labels_stay_off_the_row_above(shape, title):
    frames = [(0.5 * i, np.zeros((*shape, 3), np.uint8)) for i in range(6)]
    fig = sheet_figure(frames, title, cols=4)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = fig.axes
    first_row_bottom = min(ax.get_window_extent(renderer).y0 for ax in axes[:4])
    for ax in axes[4:]:  # the second row's labels, in display units (y grows upwards)
        label = ax.title.get_window_extent(renderer)
        assert label.y1 <= first_row_bottom, (shape, label.y1, first_row_bottom)
    for ax in axes:  # every image and label inside the figure
        for box in (ax.get_window_extent(renderer), ax.title.get_window_extent(renderer)):
            assert box.y0 >= 0 and box.y1 <= fig.bbox.height + 0.5
