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
