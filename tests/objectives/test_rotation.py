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


def test_a_random_rotation_turns_each_image_once_by_its_drawn_angle():
    """rotations="random": B inputs, input i is image i turned by its target's quarter turns (the assignment's data)."""
    from cifarlab.objectives import rotate_random

    imgs = torch.randn(64, 3, 5, 5)
    x, y = rotate_random(imgs, torch.Generator().manual_seed(0))
    assert x.shape == imgs.shape and y.shape == (64,)
    for i in range(64):
        assert torch.equal(x[i], torch.rot90(imgs[i], int(y[i]), dims=(1, 2)))
    assert set(y.tolist()) == {0, 1, 2, 3}  # 64 draws: every angle appears (chance of missing one < 1e-7)


def test_random_rotations_follow_the_generator_and_are_uniform():
    from cifarlab.objectives import rotate_random

    imgs = torch.zeros(4000, 1, 2, 2)
    _, a = rotate_random(imgs, torch.Generator().manual_seed(1))
    _, b = rotate_random(imgs, torch.Generator().manual_seed(1))
    _, c = rotate_random(imgs, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    counts = torch.bincount(a, minlength=4).float() / len(a)
    assert torch.all((counts - 0.25).abs() < 0.03), counts  # 4000 draws: sd of a share is 0.007


def test_the_task_trains_on_one_rotation_per_image_and_evaluates_all_four():
    """Rotation(rotations="random") feeds the model B inputs per step; evaluation still scores 4B (all angles)."""
    from cifarlab.data.augment import Augment
    from cifarlab.objectives import Rotation

    seen = []

    def model(inputs):
        seen.append(inputs.shape[0])
        return torch.zeros(inputs.shape[0], 4, requires_grad=True)

    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    aug = Augment("none", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 0)
    for rotations, inputs in (("random", 6), ("all", 24)):
        seen.clear()
        _, _, n = Rotation(aug, rotations=rotations).train_step(model, x, None, torch.Generator().manual_seed(0))
        assert seen == [inputs] and n == inputs
        seen.clear()
        _, _, n = Rotation(aug, rotations=rotations).eval_step(model, x, None)
        assert seen == [24] and n == 24
