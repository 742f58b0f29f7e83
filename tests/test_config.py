"""Recipes: frozen presets, unknown keys and bad values are errors that repeat the value."""

import pytest

from alexnet_split import config


def test_recipes_reject_unknown_keys_and_values():
    with pytest.raises(ValueError, match=r"unknown recipe keys \['epochz'\]"):
        config.get_recipe("paper", epochz=3)
    with pytest.raises(ValueError, match=r"unknown recipe 'papr'"):
        config.get_recipe("papr")
    with pytest.raises(ValueError, match=r"precision must be .* got 'fp8'"):
        config.get_recipe("paper", precision="fp8")
    with pytest.raises(ValueError, match=r"unknown recipe keys \['x'\]"):
        config.Recipe.from_dict({"name": "a", "x": 1})
    p = config.get_recipe("paper")
    assert (p.optimizer, p.momentum, p.weight_decay, p.batch_size, p.learning_rate) == ("sgd", 0.9, 5e-4, 128, 0.01)
    s = config.get_recipe("seed")
    assert (s.optimizer, s.batch_size, s.augment, s.weight_decay) == ("adam", 64, False, None)
    for name, make in config.PRESETS.items():
        assert "Command:" in make.__doc__, name
        assert config.Recipe.from_dict(make().to_dict()) == make()
