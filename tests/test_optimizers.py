"""PaperSGD: the paper's update, weight decay through the momentum (Section 5; defect 3)."""

import keras
import numpy as np
import pytest

import alexnet_split as A


def paper_update(w, v, grads, lr=0.01, momentum=0.9, wd=5e-4):
    """v <- 0.9 v - 0.0005 lr w - lr grad; w <- w + v, in float64."""
    for g in grads:
        v = momentum * v - wd * lr * w - lr * g
        w = w + v
    return w, v


def test_three_steps_equal_the_papers_formula():
    rng = np.random.default_rng(0)
    w0 = rng.normal(0, 1, (4, 3))
    grads = [rng.normal(0, 1, (4, 3)) for _ in range(3)]
    kernel = keras.Variable(w0.astype("float32"))
    opt = A.PaperSGD(0.01, momentum=0.9, l2=5e-4)
    opt.build([kernel])
    for g in grads:
        opt.apply([keras.ops.convert_to_tensor(g.astype("float32"))], [kernel])
    w, v = paper_update(w0, np.zeros_like(w0), grads)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kernel), w, rtol=0, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(opt.momentums[0]), v, rtol=0, atol=1e-6)
    # the control: Keras's decoupled weight_decay gives other weights (the defect this replaces)
    keras_kernel = keras.Variable(w0.astype("float32"))
    keras_opt = keras.optimizers.SGD(0.01, momentum=0.9, weight_decay=5e-4)
    keras_opt.build([keras_kernel])
    for g in grads:
        keras_opt.apply([keras.ops.convert_to_tensor(g.astype("float32"))], [keras_kernel])
    assert np.abs(keras.ops.convert_to_numpy(keras_kernel) - w).max() > 1e-5


def test_decay_in_the_steady_state_is_ten_times_keras_decoupled_decay():
    """With a zero loss gradient the paper's decay shrinks w by about lr*wd/(1 - momentum) per
    step once the momentum has built up (exactly: 1 - r, r the larger root of
    r^2 - (1 + m - lr*wd) r + m = 0), 10-11x Keras's decoupled lr*wd at momentum 0.9."""
    w0 = np.ones((2, 2), "float32")
    kernel, decoupled = keras.Variable(w0), keras.Variable(w0)
    paper = A.PaperSGD(0.1, momentum=0.9, l2=0.01)
    keras_sgd = keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.01)
    paper.build([kernel])
    keras_sgd.build([decoupled])
    zero = keras.ops.zeros((2, 2))
    for _ in range(100):
        before = keras.ops.convert_to_numpy(kernel)[0, 0]
        paper.apply([zero], [kernel])
        keras_sgd.apply([zero], [decoupled])
    paper_rate = 1 - keras.ops.convert_to_numpy(kernel)[0, 0] / before
    m, a = 0.9, 0.1 * 0.01
    r = ((1 + m - a) + np.sqrt((1 + m - a) ** 2 - 4 * m)) / 2
    np.testing.assert_allclose(paper_rate, 1 - r, rtol=0.02)
    keras_rate = 1 - keras.ops.convert_to_numpy(decoupled)[0, 0] ** (1 / 100)  # w *= 1 - lr * wd per step
    np.testing.assert_allclose(keras_rate, a, rtol=1e-3)
    assert 10 < paper_rate / keras_rate < 12


def test_biases_are_not_decayed():
    bias, kernel = keras.Variable(np.ones(3, "float32")), keras.Variable(np.ones((3, 3), "float32"))
    opt = A.PaperSGD(0.1, momentum=0.9, l2=0.5)
    opt.build([bias, kernel])
    opt.apply([keras.ops.zeros(3), keras.ops.zeros((3, 3))], [bias, kernel])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(bias), np.ones(3))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kernel), np.full((3, 3), 1 - 0.1 * 0.5), rtol=1e-6)


def test_bad_arguments_repeat_the_value_and_config_round_trips():
    with pytest.raises(ValueError, match=r"l2 must be a number >= 0, got -1"):
        A.PaperSGD(l2=-1)
    with pytest.raises(ValueError, match=r"decoupled weight_decay=0.01"):
        A.PaperSGD(weight_decay=0.01)
    opt = A.PaperSGD(0.02, momentum=0.8, l2=1e-3)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert type(again) is A.PaperSGD and (again.l2, again.momentum) == (1e-3, 0.8)


def test_the_paper_recipe_trains_with_paper_sgd():
    from alexnet_split import config, train

    opt = train._make_optimizer(config.get_recipe("paper"))
    assert type(opt) is A.PaperSGD and opt.l2 == 5e-4 and opt.weight_decay is None and opt.momentum == 0.9
    assert type(train._make_optimizer(config.get_recipe("seed"))) is keras.optimizers.Adam


def test_defaults_are_the_papers():
    """Guards PaperSGD()'s defaults (lr 0.01, momentum 0.9, l2 5e-4, no Nesterov): two steps equal the
    paper's rule."""
    opt = A.PaperSGD()
    lr = float(keras.ops.convert_to_numpy(opt.learning_rate))
    assert (lr, opt.momentum, opt.l2, opt.nesterov) == (pytest.approx(0.01), 0.9, 5e-4, False)
    w0, grads = np.array([[1.0, -2.0], [0.5, 3.0]]), [np.full((2, 2), 0.5), np.array([[1.0, 0.0], [-1.0, 2.0]])]
    kernel = keras.Variable(w0.astype("float32"))
    opt.build([kernel])
    for g in grads:  # the second step carries 0.9 x the first step's velocity
        opt.apply([keras.ops.convert_to_tensor(g.astype("float32"))], [kernel])
    w, _ = paper_update(w0, np.zeros_like(w0), grads)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kernel), w, rtol=0, atol=1e-6)
