"""The declarative tables against the paper, and parameter counts against independent numbers."""

import numpy as np
import pytest
from conftest import DEVICES, SMALL_INPUT

import alexnet_split as A
from alexnet_split import spec

VARIANTS = [(layout, mode) for layout in A.LAYOUTS for mode in A.MODES]


def test_paper_table_matches_figure_2():
    rows = {r.name: r for r in spec.PAPER.rows}
    per_tower = {name: r.width // 2 for name, r in rows.items()}
    assert per_tower == {"conv1": 48, "conv2": 128, "conv3": 192, "conv4": 192, "conv5": 128,
                         "fc6": 2048, "fc7": 2048}
    assert [(r.kernel, r.stride) for r in spec.PAPER.rows[:5]] == [(11, 4), (5, 1), (3, 1), (3, 1), (3, 1)]
    assert {n for n, r in rows.items() if r.cross} == {"conv3", "fc6", "fc7"}
    assert {n for n, r in rows.items() if r.pool} == {"conv1", "conv2", "conv5"}
    assert all(r.pool == (3, 2) for r in rows.values() if r.pool)  # overlapping pooling
    assert {n for n, r in rows.items() if r.norm} == {"conv1", "conv2"}
    assert {n for n, r in rows.items() if r.bias == 1.0} == {"conv2", "conv4", "conv5", "fc6", "fc7"}
    assert {n for n, r in rows.items() if r.dropout} == {"fc6", "fc7"}


# Computed by hand from the layer tables (REFERENCE.md section 1 and 2), not from the code.
def _conv(k, cin, cout):
    return k * k * cin * cout + cout


def _dense(i, o):
    return i * o + o


def paper_towers(classes):  # two towers; conv2/4/5 see half the channels; 6x6x256 into fc6
    return (2 * _conv(11, 3, 48) + 2 * _conv(5, 48, 128) + 2 * _conv(3, 256, 192) + 2 * _conv(3, 192, 192)
            + 2 * _conv(3, 192, 128) + 2 * _dense(6 * 6 * 256, 2048) + 2 * _dense(4096, 2048)
            + _dense(4096, classes))


def paper_merged(classes):
    return (_conv(11, 3, 96) + _conv(5, 96, 256) + _conv(3, 256, 384) + _conv(3, 384, 384) + _conv(3, 384, 256)
            + _dense(6 * 6 * 256, 4096) + _dense(4096, 4096) + _dense(4096, classes))


def paper_half(classes):  # footnote 1: half the kernels in conv1-4, conv5 and FC at full size
    return (_conv(11, 3, 48) + _conv(5, 48, 128) + _conv(3, 128, 192) + _conv(3, 192, 192) + _conv(3, 192, 256)
            + _dense(6 * 6 * 256, 4096) + _dense(4096, 4096) + _dense(4096, classes))


def seed_merged(classes):  # valid padding: 224 -> 54 -> 27 -> 17 -> 8 -> 6 -> 4 -> 2 -> 1
    bn = 4 * (96 + 256 + 384 + 384 + 256 + 4096 + 4096 + 1000)
    return (_conv(11, 3, 96) + _conv(11, 96, 256) + _conv(3, 256, 384) + _conv(3, 384, 384) + _conv(3, 384, 256)
            + _dense(256, 4096) + _dense(4096, 4096) + _dense(4096, 1000) + _dense(1000, classes) + bn)


def test_independent_formulas_agree_with_the_hand_counts():
    assert paper_towers(1000) == 60_965_224 and paper_towers(17) == 56_937_873
    assert paper_merged(1000) == 62_378_344 and paper_merged(17) == 58_350_993
    assert seed_merged(17) == 28_096_769


@pytest.mark.parametrize("layout,mode,classes,expected", [
    ("paper", "towers", 1000, 60_965_224),
    ("paper", "towers", 17, 56_937_873),
    ("paper", "merged", 1000, 62_378_344),
    ("paper", "merged", 17, 58_350_993),
    ("paper", "half", 1000, paper_half(1000)),
    ("paper", "half", 17, paper_half(17)),
    ("seed", "merged", 17, 28_096_769),
])
def test_parameter_counts(layout, mode, classes, expected):
    model = A.build_model(layout, mode, num_classes=classes)
    assert model.count_params() == expected
    # and the count from the rows alone (what the PyTorch reference is checked against)
    assert spec.parameter_count(spec.get_layout(layout), mode, num_classes=classes) == expected


def test_batchnorm_adds_four_parameters_per_normalised_channel():
    lrn = A.build_model("paper", "towers", 17).count_params()
    bn = A.build_model("paper", "towers", 17, norm="batchnorm").count_params()
    assert bn - lrn == 4 * (96 + 256)
    assert spec.parameter_count(spec.PAPER, num_classes=17, norm="batchnorm") == bn


@pytest.mark.parametrize("layout,mode", VARIANTS)
@pytest.mark.parametrize("norm", A.NORMS)
def test_every_variant_builds_with_finite_outputs_and_stable_names(layout, mode, norm):
    arch = spec.LAYOUTS[layout]
    model = A.build_model(layout, mode, num_classes=5, norm=norm, input_shape=SMALL_INPUT[layout],
                          devices=DEVICES)
    x = np.random.default_rng(0).uniform(0, 255, (2,) + SMALL_INPUT[layout]).astype("float32")
    y = np.asarray(model(x, training=False))
    assert y.shape == (2, 5)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    n = 2 if mode == "towers" else 1
    expected = ["preprocess"] + [f"t{k}_{r.name}" for r in arch.rows for k in range(n)] + ["fc8"]
    assert [layer.name for layer in model.layers[1:]] == expected
    for layer in model.layers[1:]:
        tower = int(layer.name[1]) if layer.name.startswith("t") else 0
        assert layer.device == DEVICES[tower]


def test_general_tower_count_splits_every_width():
    model = A.build_model("paper", "towers", 17, input_shape=(67, 67, 3), n_towers=4)
    assert sorted(A.tower_layer_names(model)) == [0, 1, 2, 3]
    assert model.get_layer("t3_conv1").conv.filters == 24
    assert model.get_layer("t3_fc7").dense.units == 1024
    with pytest.raises(ValueError, match="n_towers=5"):
        A.build_model("paper", "towers", n_towers=5)


@pytest.mark.parametrize("kwargs,message", [
    (dict(layout="papr"), "'papr'"),
    (dict(mode="tower"), "'tower'"),
    (dict(norm="layernorm"), "'layernorm'"),
    (dict(num_classes=0), "num_classes must be a positive integer, got 0"),
    (dict(input_shape=(32, 32, 3)), r"input_shape=\(32, 32, 3\) is too small .* at conv2 \(0x0\)"),
    (dict(input_shape=(227, 227)), r"\(227, 227\)"),
    (dict(devices=["/CPU:0"]), r"devices=\['/CPU:0'\] has 1 entries"),
    (dict(devices="/CPU:0"), "'/CPU:0'"),
])
def test_bad_arguments_name_the_value(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        A.build_model(**kwargs)


def _sources(model, name) -> list[str]:
    """The layers whose outputs the layer `name` reads, from the Functional graph."""
    return [t._keras_history.operation.name for node in model.get_layer(name)._inbound_nodes
            for t in node.input_tensors]


@pytest.mark.parametrize("layout", sorted(spec.LAYOUTS))
def test_each_tower_reads_what_its_row_says(layout):
    """The wiring from the built graph: the first row reads the image, a cross row reads every
    tower's previous layer, any other row only its own tower's; fc8 reads every tower."""
    arch = spec.get_layout(layout)
    model = A.build_model(layout, "towers", input_shape=SMALL_INPUT[layout])
    for i, row in enumerate(arch.rows):
        for k in (0, 1):
            if i == 0:
                expected = ["preprocess"]
            elif row.cross:
                expected = [f"t0_{arch.rows[i - 1].name}", f"t1_{arch.rows[i - 1].name}"]
            else:
                expected = [f"t{k}_{arch.rows[i - 1].name}"]
            assert _sources(model, f"t{k}_{row.name}") == expected, (layout, row.name, k)
    assert _sources(model, "fc8") == [f"t0_{arch.rows[-1].name}", f"t1_{arch.rows[-1].name}"]
    cross = [r.name for r in arch.rows if r.cross]
    assert cross[0] == "conv3" and all(r.kind == "dense" for r in arch.rows if r.name not in ("conv3",) and r.cross)


def test_the_papers_feature_maps_per_tower():
    """Section 3.5 / Figure 2 at 227x227: 55 -> pool 27 (conv1), 27 -> 13 (conv2), 13 -> 6 (conv5);
    an overlapping 3x3 pool of stride 2, not stride 3 (which would give 18, 8 and 3)."""
    model = A.build_model("paper", "towers")
    shapes = {name: tuple(model.get_layer(f"t1_{name}").output.shape[1:]) for name in ("conv1", "conv2", "conv3",
                                                                                       "conv4", "conv5")}
    assert shapes == {"conv1": (27, 27, 48), "conv2": (13, 13, 128), "conv3": (13, 13, 192),
                      "conv4": (13, 13, 192), "conv5": (6, 6, 128)}
    block = model.get_layer("t0_conv1")
    assert (block.pool_layer.pool_size, block.pool_layer.strides) == ((3, 3), (2, 2))
