import torch

from cifarlab.data.augment import (
    Augment,
    ContrastiveViews,
    color_jitter,
    crop_flip,
    cutout,
    normalize,
    random_crop,
    random_flip,
    random_resized_crop,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_flip_is_horizontal_and_per_sample():
    x = torch.arange(64 * 3 * 4 * 5, dtype=torch.float32).view(64, 3, 4, 5)
    y = random_flip(x, _gen())
    flipped = [bool((y[i] == x[i].flip(-1)).all()) for i in range(64)]
    kept = [bool((y[i] == x[i]).all()) for i in range(64)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54  # per-sample coin flips, not one per batch
    i = flipped.index(True)
    assert (y[i, :, :, 0] == x[i, :, :, -1]).all()  # columns reversed, rows kept


def test_crops_stay_inside_the_padded_image_and_vary():
    b, p = 256, 4
    x = torch.rand(b, 3, 8, 8)
    y = random_crop(x, _gen(), p)
    xp = torch.nn.functional.pad(x, (p,) * 4, mode="reflect")
    offsets = set()
    for i in range(b):
        found = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                 if torch.equal(xp[i, :, dy:dy + 8, dx:dx + 8], y[i])]
        assert found, f"crop {i} is not a window of the padded image"
        offsets.add(found[0])
    assert len(offsets) > 40  # offsets drawn per sample over the whole (2p+1)^2 range
    assert {o[0] for o in offsets} == set(range(2 * p + 1))


def test_fused_crop_flip_gives_flipped_or_plain_windows_of_the_padded_image():
    b, p = 200, 4
    x = torch.randint(0, 256, (b, 3, 8, 8), dtype=torch.uint8)
    y = crop_flip(x, _gen(), p)
    assert y.dtype == torch.uint8 and y.shape == x.shape
    xp = torch.nn.functional.pad(x.float(), (p,) * 4, mode="reflect")
    flips, offsets = 0, set()
    for i in range(b):
        found = [(dy, dx, f) for dy in range(2 * p + 1) for dx in range(2 * p + 1) for f in (False, True)
                 if torch.equal((xp[i, :, dy:dy + 8, dx:dx + 8].flip(-1) if f else xp[i, :, dy:dy + 8, dx:dx + 8]),
                                y[i].float())]
        assert found, f"image {i} is not a (flipped) window of the padded image"
        offsets.add(found[0][:2])
        flips += found[0][2]
    assert 50 < flips < 150 and len(offsets) > 40


def test_normalisation_matches_the_stated_mean_and_std():
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.25, 0.5)
    x = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    y = normalize(x, mean, std)
    for c in range(3):
        expected = (x[:, c].float() / 255 - mean[c]) / std[c]
        torch.testing.assert_close(y[:, c], expected, rtol=1e-5, atol=1e-5)


def test_preset_eval_is_deterministic_and_train_is_seeded():
    aug = Augment("cropflip", (0.5,) * 3, (0.25,) * 3, 4, resolution=16)
    x = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8)
    assert aug.eval(x).shape == (8, 3, 16, 16)
    torch.manual_seed(1)
    first = aug.eval(x)
    torch.manual_seed(2)  # the global generator does not reach evaluation
    assert torch.equal(first, aug.eval(x))
    assert torch.equal(aug.train(x, _gen(1)), aug.train(x, _gen(1)))
    assert not torch.equal(aug.train(x, _gen(1)), aug.train(x, _gen(2)))


def test_autoaugment_runs_on_uint8_batches():
    aug = Augment("autoaugment", (0.5,) * 3, (0.25,) * 3, 4)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = aug.train(x, _gen())
    assert out.shape == (64, 3, 32, 32) and torch.isfinite(out).all()


def test_random_resized_crop_full_scale_without_flip_is_identity():
    x = torch.rand(4, 3, 8, 8)
    y = random_resized_crop(x, _gen(), scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0)
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)
    yf = random_resized_crop(x, _gen(), scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=1.0)
    torch.testing.assert_close(yf, x.flip(-1), atol=1e-5, rtol=0)


def test_color_jitter_identity_when_disabled_and_in_range():
    x = torch.rand(16, 3, 8, 8)
    torch.testing.assert_close(color_jitter(x, _gen(), 0, 0, 0, 0, p=1.0), x, atol=1e-5, rtol=0)
    y = color_jitter(x, _gen())
    assert y.min() >= 0 and y.max() <= 1


def test_contrastive_views_shape_and_independence():
    views = ContrastiveViews((0.5,) * 3, (0.25,) * 3, num_views=3)
    x = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    v = views(x, _gen())
    assert v.shape == (5, 3, 3, 8, 8)
    assert not torch.equal(v[:, 0], v[:, 1])


def test_translate_moves_pixels_and_reflects_the_border():
    from cifarlab.data.augment import translate

    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.uint8).view(2, 3, 5, 6)
    y = translate(x, 2, -1)
    assert torch.equal(y[:, :, 2:, :5], x[:, :, :3, 1:])  # out (i, j) = in (i - 2, j + 1)
    assert torch.equal(y[:, :, 0, :5], x[:, :, 2, 1:]) and torch.equal(y[:, :, 1, :5], x[:, :, 1, 1:])  # rows 2, 1
    assert torch.equal(y[:, :, 2:, 5], x[:, :, :3, 4])  # column 6 reflects to 4
    assert torch.equal(translate(x, 0, 0), x)


def test_cutout_zeroes_one_clipped_square_per_image_at_varying_places():
    b, h, w, size = 512, 12, 12, 4
    x = torch.rand(b, 3, h, w) + 1.0  # no zeros before
    y = cutout(x, _gen(), size)
    zero = y == 0
    assert (zero.all(1) | ~zero.any(1)).all()  # every channel of a pixel together
    kept = ~zero[:, 0]
    assert torch.equal(y[:, 0][kept], x[:, 0][kept])
    corners = set()
    for i in range(b):
        rows = zero[i, 0].any(1).nonzero().flatten()
        cols = zero[i, 0].any(0).nonzero().flatten()
        assert 1 <= len(rows) <= size and 1 <= len(cols) <= size
        assert zero[i, 0].sum() == len(rows) * len(cols)  # one axis-aligned rectangle
        assert torch.equal(rows, torch.arange(rows[0], rows[-1] + 1))  # contiguous
        full = len(rows) == size and len(cols) == size
        inner = 0 < rows[0] and rows[-1] < h - 1 and 0 < cols[0] and cols[-1] < w - 1
        assert full or not inner  # only squares at the border are clipped
        corners.add((int(rows[0]), int(cols[0])))
    assert len(corners) > 60  # per-sample positions, not one per batch
    assert torch.equal(cutout(x, _gen(), 0), x)
    assert torch.equal(cutout(x, _gen(3), size), cutout(x, _gen(3), size))


def test_preset_cutout_is_applied_after_normalisation_in_train_only():
    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    aug = Augment("none", (0.5,) * 3, (0.25,) * 3, cutout=3)
    train = aug.train(x, _gen())
    assert ((train == 0).all(1).flatten(1).sum(1) > 0).float().mean() == 1  # each image has a zeroed square
    assert torch.equal(aug.eval(x), Augment("none", (0.5,) * 3, (0.25,) * 3).eval(x))


def test_size_rule_scales_padding_and_switches_to_random_resized_crop():
    from cifarlab.data.augment import crop_padding, size_rule

    assert [crop_padding(s) for s in (8, 32, 64, 96, 160)] == [1, 4, 8, 12, 20]
    assert size_rule("cropflip", 32) == ("cropflip", 4)
    assert size_rule("cropflip", 64) == ("cropflip", 8)
    assert size_rule("cropflip", 95, padding=3) == ("cropflip", 3)  # a given padding wins
    assert size_rule("cropflip", 96) == ("rrcflip", 12)
    assert size_rule("flip", 160) == ("flip", 20) and size_rule("autoaugment", 160)[0] == "autoaugment"


def test_scaled_padding_at_32_px_is_bit_identical_to_padding_4():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    a = Augment("cropflip", (0.5,) * 3, (0.25,) * 3, padding=None).train(x, _gen(3))
    b = Augment("cropflip", (0.5,) * 3, (0.25,) * 3, padding=4).train(x, _gen(3))
    c = normalize(crop_flip(x, _gen(3), 4), (0.5,) * 3, (0.25,) * 3)
    assert torch.equal(a, b) and torch.equal(a, c)


def test_scaled_padding_shifts_large_images_further():
    from cifarlab.data.augment import crop_padding

    side = 160
    cols = torch.arange(side, dtype=torch.uint8).view(1, 1, 1, side).expand(256, 3, side, side).contiguous()
    y = Augment("cropflip", (0.0,) * 3, (1 / 255,) * 3, padding=None).train(cols, _gen(1))
    # a row starts at |offset| (reflected when negative), or at 159 - |offset| when flipped: shifts up to 20 px
    first = y[:, 0, 0, 0].round().long()
    shift = torch.where(first < side // 2, first, side - 1 - first)
    assert int(shift.max()) == crop_padding(side) == 20 and int((shift > 4).sum()) > 100


def test_rrcflip_crops_a_resized_window_per_sample():
    side = 96
    ramp = torch.linspace(0, 255, side).round().to(torch.uint8)
    x = ramp.view(1, 1, 1, side).expand(64, 3, side, side).contiguous()  # value encodes the column
    y = Augment("rrcflip", (0.0,) * 3, (1 / 255,) * 3).train(x, _gen(2))
    assert y.shape == x.shape and y.dtype == torch.float32
    row = y[:, 0, side // 2]  # (B, W)
    span = row.max(1).values - row.min(1).values
    assert (span <= 255.5).all() and (span < 200).sum() > 5  # windows narrower than the image, resized to it
    steps = row[:, 1:] - row[:, :-1]
    increasing, decreasing = (steps >= -0.5).all(1), (steps <= 0.5).all(1)
    assert (increasing | decreasing).all() and 5 < int(decreasing.sum()) < 59  # flipped per sample
    assert len({round(float(v), 1) for v in row[:, 0]}) > 20  # a different window per sample
