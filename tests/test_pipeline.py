"""The input pipeline's PCA lighting on the real images (Section 4.1; defect 1)."""

import numpy as np

from alexnet_split import pipeline


def test_pca_lighting_shifts_a_few_pixel_values_on_the_real_images(real_flowers):
    """The shift along each principal component has std 0.1 x that component's magnitude (the
    pixels' std along it) within 10%, and its length stays under 30 pixel values at the 99th
    percentile. Measured through TrainBatches itself: lit batch minus unlit batch."""
    images, labels = real_flowers.images[:680], real_flowers.labels[:680]
    lit = pipeline.TrainBatches(images, labels, 128, 64, 17, seed=0, augment=False, pca_sigma=0.1)
    plain = pipeline.TrainBatches(images, labels, 128, 64, 17, seed=0, augment=False)
    magnitudes, eigvec = lit.pca
    # the magnitudes are pixel standard deviations along the components (0..255 scale)
    px = images.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(np.sort(magnitudes), np.sort(np.std(px @ eigvec, axis=0)), rtol=0.05)
    assert 60 < magnitudes.max() < 150, magnitudes
    shifts = []
    for epoch in range(3):
        for b in range(lit.batches_per_epoch):
            delta = lit.batch(epoch, b)[0] - plain.batch(epoch, b)[0]
            # one RGB shift per image, the same at every pixel (up to float32 rounding)
            np.testing.assert_allclose(delta, np.broadcast_to(delta[:, :1, :1], delta.shape), atol=1e-3)
            shifts.append(delta[:, 0, 0])
    shifts = np.concatenate(shifts)
    assert len(shifts) == 3 * 680
    along = shifts @ eigvec
    np.testing.assert_allclose(along.std(axis=0) / (0.1 * magnitudes), 1.0, rtol=0.10)
    p99 = np.percentile(np.linalg.norm(shifts, axis=1), 99)
    assert p99 < 30, p99
    # the control: the eigenvalues themselves (variances) as magnitudes, the committed defect
    old = (np.random.default_rng(0).normal(0, 0.1, (2040, 3)) * magnitudes ** 2) @ eigvec.T
    assert np.percentile(np.linalg.norm(old, axis=1), 99) > 500
