"""The report's figures, drawn with OpenCV only."""

import numpy as np

from stereo_depth_ros.tools.plots import line_plot

_BORDER = np.array([160, 160, 160], np.uint8)  # the legend box's outline


def _legend_rows(image: np.ndarray) -> np.ndarray:
    """Rows of the legend box's top and bottom edges (long runs of its outline colour; antialiased
    text has a few such pixels only)."""
    return np.nonzero((image == _BORDER).all(axis=2).sum(axis=1) > 40)[0]


def test_line_plot_puts_its_legend_where_the_lines_are_not() -> None:
    # Lines along the top of the plot: the legend goes to the bottom, drawn over nothing.
    image = line_plot({"node": [30.0] * 60, "frozen": [29.5] * 60, "sgbm": [28.0] * 60}, "error", "bad-2 %")
    assert image.shape == (420, 900, 3) and image.dtype == np.uint8
    rows = _legend_rows(image)
    assert rows.size and rows.min() > 420 // 2
    # Lines along the bottom rising to the top right at the end: the legend goes to the top left.
    image = line_plot({"a": [0.1] * 58 + [5.0, 10.0], "b": [0.2] * 60}, "error", "bad-2 %")
    rows = _legend_rows(image)
    columns = np.nonzero((image == _BORDER).all(axis=2).sum(axis=0) > 40)[0]
    assert rows.size and rows.max() < 420 // 2 and columns.size and columns.max() < 900 // 2


def test_line_plot_draws_every_series_and_its_name() -> None:
    image = line_plot({"node": [3.0, 2.0, 1.0], "frozen": [3.0, 3.0, 3.0]}, "error", "px")
    for colour in ((46, 125, 232), (80, 175, 76)):  # the first two series' BGR colours
        assert (image == np.array(colour, np.uint8)).all(axis=2).sum() > 50
