import numpy as np
import torch

from sagekit.viz import RIGHT, WRONG, grid_array


def test_grid_marks_colour_the_border_only():
    images = torch.zeros(3, 3, 4, 4)
    arr = grid_array(images, ncol=3, marks=[True, False, None], pad=1)
    assert arr.shape == (6, 18, 3)
    corners = [arr[0, c * 6] for c in range(3)]  # top-left border pixel of each cell
    assert np.allclose(corners[0], RIGHT) and np.allclose(corners[1], WRONG) and np.allclose(corners[2], 1.0)
    assert np.allclose(arr[1:5, 1:5], 0.0)  # the image itself is untouched


def test_failure_against_frequency_labels_its_axis_in_plain_numbers():
    import pandas as pd

    from sagekit.viz import failure_vs_frequency

    wide = pd.DataFrame({"captions": [0, 12, 900], "failure_rate": [1.0, 0.5, 0.0],
                         "category": ["named object missing", "colour wrong", ""]})
    fig = failure_vs_frequency(wide, "t")
    fig.canvas.draw()
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert ax.get_xscale() == "log" and labels and not any("$" in t for t in labels)
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"named object missing", "colour wrong", "none failed"}
    narrow = failure_vs_frequency(wide.assign(captions=[76, 80, 84]), "t")
    narrow.canvas.draw()
    assert narrow.axes[0].get_xscale() == "linear" and any(t.get_text() for t in narrow.axes[0].get_xticklabels())
    assert failure_vs_frequency(None, "t") is None


def test_viz_leaves_matplotlib_settings_alone_and_draws_dollars_as_text():
    import importlib

    import matplotlib
    import matplotlib.pyplot as plt
    import torch

    import sagekit.viz as viz

    before = dict(matplotlib.rcParams)
    importlib.reload(viz)
    fig = viz.image_grid(torch.rand(2, 3, 8, 8), ncol=2, title="a $5 prompt with one $ sign", col_labels=["$", "x"])
    fig.canvas.draw()  # as mathtext, the lone "$" would raise here
    assert dict(matplotlib.rcParams) == before and matplotlib.rcParams["text.parse_math"] is True
    assert fig.axes[0].title.get_parse_math() is False
    plt.close(fig)
