import numpy as np

from cifarlab.data.sizing import MIXED_MAX_SIDE, MIXED_MIN_SIDE, choose_side, resize_note


def test_uniform_square_keeps_its_size_and_needs_no_note():
    sizes = np.array([[96, 96]] * 5)
    assert choose_side(sizes) == 96 and resize_note(sizes, 96) is None


def test_mixed_sizes_take_the_median_shorter_side_within_bounds():
    assert choose_side(np.array([[500, 375], [375, 500], [160, 213], [400, 400], [1, 1]])) == 160  # capped
    assert choose_side(np.array([[60, 48], [48, 48], [50, 200]])) == 48  # median of 48, 48, 50
    assert choose_side(np.array([[8, 8], [10, 12], [1, 30]])) == MIXED_MIN_SIDE  # median 8, floored
    assert choose_side(np.array([[40, 40]] * 3 + [[40, 41]])) == 40  # one non-square image makes it mixed
    assert choose_side(np.array([[320, 480]] * 3)) == MIXED_MAX_SIDE  # uniform but not square


def test_a_request_wins_and_is_named():
    sizes = np.array([[32, 32]] * 3)
    assert choose_side(sizes, 64) == 64
    assert resize_note(sizes, 64, 64, {"train": 2, "test": 1}) == (
        "resized 3 images (train 2, test 1) of 32 px to 64 px (shorter side, bicubic, centre crop; image_size=64)")


def test_note_counts_only_what_changed_and_gives_the_range():
    sizes = np.array([[160, 213], [160, 160], [240, 160], [160, 500]])
    note = resize_note(sizes, 160)
    assert note.startswith("resized 3 of 4 images of 160-500 px to 160 px (shorter side, bicubic, centre crop; the "
                           "default for mixed sizes: the median shorter side (160 px) within 32-160 px")
