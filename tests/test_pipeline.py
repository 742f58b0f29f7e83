"""The NumPy input pipeline: batches as a function of (seed, step), validation intervals,
the 10 test crops, and the PCA lighting on the real images (Section 4.1; defect 1)."""

import numpy as np

from alexnet_split import pipeline


def test_pca_lighting_shifts_a_few_pixel_values_on_the_real_images(real_flowers):
    """The shift along each principal component has std 0.1 x that component's magnitude (the
    pixels' std along it) within 10%, and its length stays under 30 pixel values at the 99th
    percentile. Measured through TrainBatches itself: lit batch minus unlit batch."""
    images, labels = real_flowers.images[:680], real_flowers.labels[:680]
    lit = pipeline.TrainBatches(images, labels, 128, 64, 17, seed=0, augment=False, pca_sigma=0.1)
    plain = pipeline.TrainBatches(images, labels, 128, 64, 17, seed=0, augment=False)
    magnitudes, eigvec = lit.plan.pca
    # the magnitudes are pixel standard deviations along the components (0..255 scale)
    px = images.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(np.sort(magnitudes), np.sort(np.std(px @ eigvec, axis=0)), rtol=0.05)
    assert 60 < magnitudes.max() < 150, magnitudes
    shifts = []
    for epoch in range(3):
        for b in range(lit.batches_per_epoch):
            delta = lit.step(epoch * lit.batches_per_epoch + b)[0] - plain.step(epoch * plain.batches_per_epoch + b)[0]
            # one RGB shift per image, the same at every pixel (up to float32 rounding)
            np.testing.assert_allclose(delta, np.broadcast_to(delta[:, :1, :1], delta.shape), atol=1e-3)
            shifts.append(delta[:, 0, 0])
    shifts = np.concatenate(shifts)
    assert len(shifts) == 3 * 640  # 5 full batches of 128 per epoch
    along = shifts @ eigvec
    np.testing.assert_allclose(along.std(axis=0) / (0.1 * magnitudes), 1.0, rtol=0.10)
    p99 = np.percentile(np.linalg.norm(shifts, axis=1), 99)
    assert p99 < 30, p99
    # the control: the eigenvalues themselves (variances) as magnitudes, the committed defect
    old = (np.random.default_rng(0).normal(0, 0.1, (2040, 3)) * magnitudes ** 2) @ eigvec.T
    assert np.percentile(np.linalg.norm(old, axis=1), 99) > 500


def test_pipeline_is_a_function_of_seed_and_step():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50, 40, 40, 3), dtype=np.uint8)
    labels = np.arange(50) % 17
    a = pipeline.TrainBatches(images, labels, 16, 32, 17, seed=3, pca_sigma=0.1)
    b = pipeline.TrainBatches(images, labels, 16, 32, 17, seed=3, pca_sigma=0.1)
    xa, ya = a.step(2 * a.batches_per_epoch + 1)
    xb, yb = b.step(2 * b.batches_per_epoch + 1)
    assert xa.shape == (16, 32, 32, 3) and ya.shape == (16, 17)
    np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(b.step(3 * b.batches_per_epoch + 1)[0], xa)
    assert len(a) == 3 and {a[i][0].shape[0] for i in range(3)} == {16}  # default interval: an epoch of full batches
    a.set_interval(2)
    np.testing.assert_array_equal(a[1][0], xa)
    # an epoch shows 48 distinct images; the 2 it leaves out change from epoch to epoch
    out = []
    for epoch in range(2):
        seen = np.concatenate([a.plan.draws(epoch * 3 + i).idx for i in range(3)])
        assert len(set(seen.tolist())) == 48
        out.append(set(range(50)) - set(seen.tolist()))
    assert out[0] != out[1]


def test_validation_intervals_count_steps_across_epochs():
    """Interval k of n steps holds steps k*n .. k*n+n-1, wherever the epochs (3 steps) begin."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50, 40, 40, 3), dtype=np.uint8)
    labels = np.arange(50) % 17
    by_step = pipeline.TrainBatches(images, labels, 16, 32, 17, seed=3, interval_steps=4)
    assert len(by_step) == 4 and by_step.batches_per_epoch == 3
    by_step.set_interval(1)  # steps 4, 5, 6, 7 = epoch 1 batches 1 and 2, epoch 2 batches 0 and 1
    for i, (epoch, b) in enumerate([(1, 1), (1, 2), (2, 0), (2, 1)]):
        np.testing.assert_array_equal(by_step[i][0], by_step.step(epoch * by_step.batches_per_epoch + b)[0])


def test_ten_crops_are_corners_centre_and_mirrors():
    images = np.arange(2 * 6 * 6 * 3, dtype=np.uint8).reshape(2, 6, 6, 3)
    views = pipeline.crops(images, 4, ten=True)
    assert len(views) == 10
    np.testing.assert_array_equal(views[1], images[:, :4, :4])
    np.testing.assert_array_equal(views[4], images[:, 2:, 2:])
    np.testing.assert_array_equal(views[5], images[:, 1:5, 1:5][:, :, ::-1])
    probs = np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1]])
    assert pipeline.topk_accuracy(probs, [2, 0], 1) == 0.5 and pipeline.topk_accuracy(probs, [2, 0], 2) == 1.0


def test_pipeline_speed_command(data_root, capsys):
    from alexnet_split import cli

    assert cli.main(["pipeline-speed", "--recipe", "quick", "--data", str(data_root)]) == 0
    out = capsys.readouterr().out
    speed = float(out.split("):")[1].split("images/s")[0].replace(",", ""))
    assert speed > 100, out  # NumPy crops of 67x67 uint8 images: thousands per second


K = 8  # row and column codes step by 8: a 32-px image's codes 0..248 fit in uint8


def coded_images(n, size=32):
    """uint8 images whose pixel (r, c) of image i is (i, r * K, c * K): every crop says where it came from."""
    images = np.empty((n, size, size, 3), np.uint8)
    images[..., 0] = np.arange(n)[:, None, None]
    images[..., 1] = (np.arange(size) * K)[None, :, None]
    images[..., 2] = (np.arange(size) * K)[None, None, :]
    return images


def decode(crop):
    """(image, top, left, flipped) of a crop of coded_images."""
    cols = np.rint(crop[0, :, 2]).astype(int) // K
    return int(np.rint(crop[0, 0, 0])), int(np.rint(crop[0, 0, 1])) // K, int(cols.min()), bool(cols[0] > cols[-1])


def test_crops_are_random_windows_flipped_half_the_time():
    """Guards the random crops and flips (crops always top-left, or never flipped, fail) and their labels."""
    n, b, size, c = 128, 32, 32, 24
    images, labels = coded_images(n, size), np.arange(n) % 17
    batches = pipeline.TrainBatches(images, labels, b, c, 17, seed=0, interval_steps=3 * n // b)  # 3 epochs
    draws = []
    for i in range(len(batches)):
        x, y = batches[i]
        for crop, onehot in zip(x, y, strict=False):
            j, top, left, flipped = decode(crop)
            window = images[j, top:top + c, left:left + c]
            np.testing.assert_array_equal(crop, window[:, ::-1] if flipped else window)
            assert onehot.argmax() == j % 17 and onehot.sum() == 1
            draws.append((top, left, flipped))
    tops, lefts, flips = map(np.array, zip(*draws, strict=False))
    assert len(draws) == 3 * n
    assert len(set(zip(tops, lefts, strict=False))) > 40 and tops.max() == lefts.max() == size - c  # of 9 x 9 offsets
    assert 0.25 < flips.mean() < 0.75
    centre = pipeline.TrainBatches(images, labels, b, c, 17, seed=0, augment=False)
    for i in range(len(centre)):
        assert {decode(crop)[1:] for crop in centre[i][0]} == {((size - c) // 2, (size - c) // 2, False)}


def test_each_epoch_has_a_new_order_and_new_draws():
    """Guards against the same image order, or the same crop/flip draws, in every data epoch."""
    n, b = 64, 16
    images, labels = coded_images(n), np.arange(n) % 17
    batches = pipeline.TrainBatches(images, labels, b, 24, 17, seed=1, interval_steps=2 * n // b)  # 2 epochs
    seen = [decode(crop) for i in range(len(batches)) for crop in batches[i][0]]
    first, second = seen[:n], seen[n:]
    for epoch in (first, second):
        assert sorted(j for j, *_ in epoch) == list(range(n))  # every image exactly once
    assert [j for j, *_ in first] != [j for j, *_ in second]
    same = sum(a[1:] == b[1:] for a, b in zip(first, second, strict=False))  # the draw at the same place in the epoch
    assert same < n // 4, same  # 1 in 162 by chance


def test_a_step_is_a_function_of_the_seed():
    """Guards determinism: the same (seed, step) gives the same batch from a fresh object, another seed another."""
    images, labels = coded_images(64), np.arange(64) % 17

    def step(seed, sigma=0.1, s=6):
        return pipeline.TrainBatches(images, labels, 16, 24, 17, seed=seed, pca_sigma=sigma, interval_steps=8)[s]

    x, y = step(5)
    again = step(5)
    np.testing.assert_array_equal(x, again[0])
    np.testing.assert_array_equal(y, again[1])
    assert not np.array_equal(step(6)[0], x)
    unlit, other = step(5, 0.0)[0], step(6, 0.0)[0]  # decode needs unshifted pixels
    # new draws, not just a new order
    assert sum(decode(a)[1:] == decode(b)[1:] for a, b in zip(unlit, other, strict=False)) < 8


def test_pca_lighting_is_a_tenth_of_the_pixel_spread_on_known_covariance():
    """Guards the lighting's size without the real archive: eigenvalues for magnitudes in pca_basis, or a
    sigma other than the caller's 0.1 in TrainBatches, give shifts far from 0.1 x the pixel std."""
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))  # the principal directions, q[:, k] with pixel std stds[k]
    stds = np.array([20.0, 8.0, 3.0])
    images = np.rint(128 + (rng.normal(size=(200, 16, 16, 3)) * stds) @ q.T).clip(0, 255).astype(np.uint8)
    shifts = pipeline.pca_shifts(np.random.default_rng(1), 20_000, pipeline.pca_basis(images), 0.1)
    np.testing.assert_allclose(np.std(shifts @ q, axis=0), 0.1 * stds, rtol=0.10)
    assert np.percentile(np.linalg.norm(shifts, axis=1), 99) < 40
    # through TrainBatches: a lit batch minus the unlit batch of the same step is one RGB shift per image
    labels = np.arange(200) % 17
    lit = pipeline.TrainBatches(images, labels, 50, 12, 17, seed=0, augment=False, pca_sigma=0.1, interval_steps=40)
    plain = pipeline.TrainBatches(images, labels, 50, 12, 17, seed=0, augment=False, interval_steps=40)
    deltas = [lit[i][0] - plain[i][0] for i in range(len(lit))]  # 10 epochs: 2,000 shifts
    for d in deltas:
        np.testing.assert_allclose(d, np.broadcast_to(d[:, :1, :1], d.shape), atol=1e-3)
    along = np.concatenate([d[:, 0, 0] for d in deltas]) @ q[:, 0]
    np.testing.assert_allclose(np.std(along), 0.1 * stds[0], rtol=0.10)


def test_pca_lighting_draws_an_alpha_per_component():
    """Section 4.1 draws one alpha per image *and* per principal component: along the components
    the shifts are uncorrelated, each with its own spread (a shared alpha would make them +-1 correlated)."""
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    magnitudes = np.array([20.0, 8.0, 3.0], np.float32)
    shifts = pipeline.pca_shifts(np.random.default_rng(1), 20_000, (magnitudes, q.astype(np.float32)), 0.1)
    along = shifts @ q  # back to the components: alpha_k * magnitude_k
    corr = np.corrcoef(along, rowvar=False)
    assert np.abs(corr[np.triu_indices(3, 1)]).max() < 0.05, corr
    np.testing.assert_allclose(along.std(axis=0), 0.1 * magnitudes, rtol=0.05)
