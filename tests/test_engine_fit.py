"""The Keras-fit engine's own pieces (the engine end to end is in test_train.py)."""

import keras
import numpy as np

from alexnet_split import engine_fit


def test_a_step_recipe_heads_each_interval_by_its_steps_not_as_an_epoch(capsys):
    """In a recipe that counts steps a Keras epoch is a validation interval: the log says which
    steps it trained, never "Epoch 1/3"."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.zeros((8, 2), np.float32), np.zeros((8, 1), np.float32)
    model.fit(x, y, batch_size=2, epochs=3, steps_per_epoch=2, verbose=2,
              callbacks=[engine_fit._StepsProgress(every=2, total=6)])
    out = capsys.readouterr().out
    assert "Epoch" not in out, out
    assert [ln for ln in out.splitlines() if ln.startswith("Steps")] == [
        "Steps 1-2 of 6 (validation 1/3)", "Steps 3-4 of 6 (validation 2/3)", "Steps 5-6 of 6 (validation 3/3)"]


def test_a_step_run_logs_steps(tmp_path, data_root, capsys):
    """The engine wires it in: a run of a step recipe logs its intervals by their steps."""
    from conftest import DEVICES

    from alexnet_split import train

    train.train(tmp_path / "run", recipe="quick", data_root=data_root, devices=DEVICES, verbose=2, engine="fit",
                overrides={"epochs": None, "steps": 4, "eval_every": 2, "batch_size": 16})
    out = capsys.readouterr().out
    assert "Steps 1-2 of 4 (validation 1/2)" in out and "Steps 3-4 of 4 (validation 2/2)" in out
    assert "Epoch 1/2" not in out, out
