import numpy as np
import torch

from cifarlab.objectives import rotate_all


def test_rot90_is_counter_clockwise_as_displayed_and_labelled_by_quarter_turns():
    img = torch.zeros(1, 1, 3, 3)
    img[0, 0, 0, 0] = 1.0  # marker at the top-left corner
    x, y = rotate_all(img)
    assert y.tolist() == [0, 1, 2, 3]
    corners = [tuple(torch.nonzero(x[k, 0])[0].tolist()) for k in range(4)]
    # counter-clockwise: top-left -> bottom-left -> bottom-right -> top-right
    assert corners == [(0, 0), (2, 0), (2, 2), (0, 2)]
    for k in range(4):
        assert np.array_equal(x[k, 0].numpy(), np.rot90(img[0, 0].numpy(), k))


def test_every_image_appears_in_all_four_rotations_in_the_batch():
    imgs = torch.randn(5, 3, 4, 4)
    x, y = rotate_all(imgs)
    assert x.shape == (20, 3, 4, 4)
    for i in range(5):
        for k in range(4):
            j = k * 5 + i
            assert y[j] == k and torch.equal(x[j], torch.rot90(imgs[i], k, dims=(1, 2)))
