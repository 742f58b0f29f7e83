"""`model.save("m.keras")` + `keras.models.load_model` round trips, for every variant."""

import keras
import numpy as np
import pytest
from conftest import DEVICES, SMALL_INPUT

import alexnet_split as A


@pytest.mark.parametrize("layout,mode", [("paper", "towers"), ("paper", "half"), ("seed", "towers"),
                                         ("seed", "merged")])
def test_save_load_gives_identical_predictions_and_placement(tmp_path, layout, mode):
    model = A.build_model(layout, mode, num_classes=5, input_shape=SMALL_INPUT[layout], devices=DEVICES)
    x = np.random.default_rng(0).uniform(0, 255, (2,) + SMALL_INPUT[layout]).astype("float32")
    before = np.asarray(model.predict(x, verbose=0))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects: the layers are registered
    after = np.asarray(loaded.predict(x, verbose=0))
    np.testing.assert_array_equal(after, before)
    assert type(loaded) is type(model) is A.PlacedModel
    for layer in loaded.layers[1:]:
        assert layer.device == model.get_layer(layer.name).device
        for v in layer.variables:
            assert v.value.device.endswith(layer.device.lstrip("/")), (v.path, v.value.device)


def test_compiled_model_round_trip_keeps_training_placed(tmp_path):
    model = A.build_model("paper", "towers", 5, input_shape=(67, 67, 3), devices=DEVICES)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "categorical_crossentropy")
    x = np.random.default_rng(1).uniform(0, 255, (4, 67, 67, 3)).astype("float32")
    y = keras.utils.to_categorical([0, 1, 2, 3], 5)
    model.fit(x, y, batch_size=2, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.optimizer._alexnet_split_placed  # compile() re-wrapped the restored optimizer

    def momentum(m):
        return m.optimizer.momentums[m.optimizer._get_variable_index(m.get_layer("t1_fc7").dense.kernel)]

    np.testing.assert_array_equal(momentum(loaded).numpy(), momentum(model).numpy())
    assert np.abs(momentum(loaded).numpy()).max() > 0
    assert momentum(loaded).value.device.endswith("CPU:1")
    loaded.fit(x, y, batch_size=2, verbose=0)


def test_unplaced_model_is_a_plain_functional_model(tmp_path):
    model = A.build_model("paper", "merged", 5, input_shape=(67, 67, 3))
    assert not isinstance(model, A.PlacedModel)
    model.save(tmp_path / "m.keras")
    x = np.random.default_rng(2).uniform(0, 255, (1, 67, 67, 3)).astype("float32")
    np.testing.assert_array_equal(keras.models.load_model(tmp_path / "m.keras").predict(x, verbose=0),
                                  model.predict(x, verbose=0))


@pytest.mark.slow
def test_load_model_needs_only_the_package_imported(tmp_path):
    """In a fresh process where only ``import alexnet_split`` ran (its names load lazily),
    ``alexnet_split.load_model`` registers the saved classes first; the control: Keras alone does
    not know them yet."""
    import subprocess
    import sys

    A.build_model("seed", "half", 5, input_shape=SMALL_INPUT["seed"]).save(tmp_path / "m.keras")
    code = "import sys, alexnet_split as A; print(A.load_model(sys.argv[1]).get_layer('t0_conv1').name)"
    env = {"KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.keras")], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0 and proc.stdout.split()[0] == "t0_conv1", proc.stderr[-2000:]
    control = subprocess.run([sys.executable, "-c", "import sys, alexnet_split, keras; keras.models.load_model("
                              "sys.argv[1])", str(tmp_path / "m.keras")], capture_output=True, text=True, timeout=300,
                             env=env)
    assert control.returncode != 0 and "Could not locate class" in control.stderr, control.stderr[-2000:]
