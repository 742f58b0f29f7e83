"""The layers: local response normalisation (Section 3.3) against TensorFlow's and the formula."""

import numpy as np

from alexnet_split.layers import LRN


def test_lrn_matches_tensorflow_and_the_paper_formula():
    import tensorflow as tf

    x = np.random.default_rng(1).normal(0, 30, (2, 5, 5, 12)).astype("float32")
    ours = np.asarray(LRN()(x))
    theirs = tf.nn.local_response_normalization(x, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    c = 7  # the formula of Section 3.3, written out for one channel
    by_hand = x[..., c] / (2.0 + 1e-4 * (x[..., c - 2:c + 3] ** 2).sum(-1)) ** 0.75
    np.testing.assert_allclose(ours[..., c], by_hand, rtol=1e-5)


def test_lrn_other_beta_and_groups():
    import tensorflow as tf

    x = np.random.default_rng(2).normal(0, 30, (2, 4, 4, 12)).astype("float32")
    np.testing.assert_allclose(np.asarray(LRN(beta=0.5)(x)),
                               tf.nn.local_response_normalization(x, 2, 2.0, 1e-4, 0.5).numpy(), rtol=1e-5)
    halves = [tf.nn.local_response_normalization(h, 2, 2.0, 1e-4, 0.75).numpy() for h in np.split(x, 2, axis=-1)]
    np.testing.assert_allclose(np.asarray(LRN(groups=2)(x)), np.concatenate(halves, -1), rtol=1e-5)
