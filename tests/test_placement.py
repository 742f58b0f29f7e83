"""Placement proven from TensorFlow's runtime: the placer log and the partitioned graphs.

Each check trains a few steps in a child process (logical devices are per process) on two
logical CPU devices; see alexnet_split/placement_log.py for what is parsed.
"""


import itertools
from pathlib import Path

import numpy as np
import pytest

from alexnet_split import figure2, placement_check, placement_log, spec

ROOT = Path(__file__).resolve().parents[1]

# The paper's Figure 2, written out: where tower outputs feed the other tower (forward), and the
# gradients of those same connections (backward). The image also feeds tower 1's conv1 from
# the shared preprocessing on device 0.
PAPER_FORWARD = {
    ("preprocess", "t1_conv1"),
    ("t0_conv2", "t1_conv3"), ("t1_conv2", "t0_conv3"),
    ("t0_conv5", "t1_fc6"), ("t1_conv5", "t0_fc6"),
    ("t0_fc6", "t1_fc7"), ("t1_fc6", "t0_fc7"),
    ("t1_fc7", "fc8"),
}


def expected_from_spec(layout):
    """The same set derived from a spec table's `cross` flags (for the other layouts)."""
    rows = spec.LAYOUTS[layout].rows
    fwd = {("preprocess", f"t1_{rows[0].name}")}
    for prev, row in itertools.pairwise(rows):
        if row.cross:
            fwd |= {(f"t0_{prev.name}", f"t1_{row.name}"), (f"t1_{prev.name}", f"t0_{row.name}")}
    return fwd | {(f"t1_{rows[-1].name}", "fc8")}


def data_edges(report):
    """{(phase, producer, consumer)} minus the optimizer's shared-scalar reads, checked apart."""
    return {e for e in report.cross_edges() if e[0] != "update"}


def assert_all_placed(report, optimizer_slots):
    devices = report.devices
    assert devices[0] != devices[1]
    # 1. every variable of tower k (weights, BN statistics, dropout seed state) on device k
    assert report.variables
    for v in report.variables:
        k = placement_log.tower_of(v["block"])
        assert v["device"].endswith(devices[k].lstrip("/")), v
    # 2. every optimizer slot on its weight's device
    n_weights = sum(1 for v in report.variables if v["path"].endswith(("kernel", "bias", "gamma", "beta")))
    assert len(report.slots) == optimizer_slots * n_weights
    for s in report.slots:
        assert s["device"] == s["reference_device"], s
    assert sum(s["device"].endswith("CPU:1") for s in report.slots) == len(report.slots) // 2 - optimizer_slots
    # 3. every forward, backward and update op of tower k on device k, from the placer log
    counts = report.op_counts()
    for phase in ("forward", "backward", "update"):
        assert counts[(1, phase)]["CPU:1"] > 50, (phase, counts[(1, phase)])
    assert report.misplaced_ops() == []


@pytest.mark.slow
def test_paper_towers_sgd_forward_backward_updates_and_momentum_on_their_device(tmp_path):
    report = placement_check.check("paper", "towers", optimizer="sgd")
    assert_all_placed(report, optimizer_slots=1)
    # With SGD no tower-1 op runs anywhere but device 1 (not even a read of a shared scalar).
    assert all(op["device"].endswith("CPU:1") for op in report.ops if placement_log.tower_of(op["block"]) == 1)
    # 4. tensors cross devices only at the cross-connections and at their gradients...
    backward = {("backward", consumer, producer) for producer, consumer in PAPER_FORWARD if producer != "preprocess"}
    assert data_edges(report) == {("forward", p, c) for p, c in PAPER_FORWARD} | backward
    # ...plus the shared learning rate: one scalar sent to device 1 for its updates (PaperSGD's decay
    # is part of the update, so there is no separate decay pass reading it again).
    updates = [e for e in report.edges if e["phase"] == "update"]
    assert len(updates) == 1 and updates[0]["source"].split("/")[-1].startswith("ReadVariableOp")
    assert updates[0]["recv_device"].endswith("CPU:1")
    # 5. Figure 2 drawn from this report has one arrow per cross-device edge, no more, no fewer
    svg = tmp_path / "towers.svg"
    drawn = figure2.draw(report, svg)
    assert figure2.edge_ids_in_svg(svg.read_text()) == set(drawn) == {figure2.edge_id(*e) for e in report.cross_edges()}
    assert len(drawn) == len(report.cross_edges()) == 22


def test_committed_figure_2_has_the_committed_proofs_edges():
    """results/placement/towers.svg and paper_towers_sgd.txt come from one `check-placement` run."""
    proof = (ROOT / "results/placement/paper_towers_sgd.txt").read_text()
    listed = proof.split("Tensors that crossed devices")[1].splitlines()[1:]
    edges = set()
    for line in filter(str.strip, listed):
        phase, rest = line.split(None, 1)
        producer, consumer = (s.strip() for s in rest.split("->"))
        edges.add(figure2.edge_id(phase, None if producer == "(optimizer scalar)" else producer, consumer))
    assert len(edges) == 22
    assert figure2.edge_ids_in_svg((ROOT / "results/placement/towers.svg").read_text()) == edges


@pytest.mark.slow
def test_paper_towers_adam_m_and_v_on_their_device():
    report = placement_check.check("paper", "towers", optimizer="adam")
    assert_all_placed(report, optimizer_slots=2)
    # Adam's update_step reads the shared iteration counter once per weight; a ReadVariableOp
    # runs where its variable lives (device 0), everything else of the update runs on device 1.
    shared = [op for op in report.ops
              if placement_log.tower_of(op["block"]) == 1 and report.is_shared_scalar_read(op)]
    assert len(shared) == 14
    assert {e[0] for e in report.cross_edges()} == {"forward", "backward", "update"}


@pytest.mark.slow
def test_seed_towers_with_batchnorm():
    report = placement_check.check("seed", "towers", optimizer="adam", input_size=215, batch=2)
    assert_all_placed(report, optimizer_slots=2)
    assert any("moving_mean" in v["path"] and v["device"].endswith("CPU:1") for v in report.variables)
    fwd = expected_from_spec("seed")
    backward = {("backward", c, p) for p, c in fwd if p != "preprocess"}
    assert data_edges(report) == {("forward", p, c) for p, c in fwd} | backward


@pytest.mark.slow
def test_naive_keras_training_misplaces_backward_ops_and_slots():
    """The control: the same placed layers under Keras's stock train_step and optimizer."""
    report = placement_check.check("paper", "towers", optimizer="sgd", naive=True)
    misplaced = report.misplaced_ops()
    assert any(op["phase"] == "backward" and op["type"] == "BiasAddGrad" for op in misplaced)
    assert any(s["device"] != s["reference_device"] for s in report.slots)
    # Tower 1's weight gradients are computed on device 0, so its conv outputs cross back.
    assert len(data_edges(report)) > len(PAPER_FORWARD) * 2


# Every private Keras attribute the package patches, calls or overrides (grep -rn "\._[a-z]" alexnet_split):
# placement.place_optimizer and placement_check read or replace the first four, train._TensorBoard
# overrides the last. A Keras release that renames one must fail here, by name, not deep in a run.
OPTIMIZER_HOOKS = ("_backend_update_step", "_apply_weight_decay", "_get_variable_index", "_use_weight_decay")


def test_the_private_keras_hooks_the_package_uses_exist_and_are_called():
    import keras

    for name in OPTIMIZER_HOOKS:
        assert hasattr(keras.optimizers.Optimizer, name), \
            f"Keras {keras.__version__} has no Optimizer.{name}; alexnet_split.placement patches or calls it"
    assert hasattr(keras.callbacks.TensorBoard, "_collect_learning_rate"), \
        f"Keras {keras.__version__} has no TensorBoard._collect_learning_rate; alexnet_split.train overrides it"
    # Patched per instance, they must still be on the path optimizer.apply takes.
    w = keras.Variable(np.ones((3, 2), "float32"))
    opt = keras.optimizers.Adam(0.1, weight_decay=0.01)
    opt.build([w])
    assert opt._get_variable_index(w) == 0 and opt._use_weight_decay(w)
    assert len(opt._momentums) == len(opt._velocities) == 1, "placement_check._slots_of reads Adam's slots there"
    called = []
    for name in ("_backend_update_step", "_apply_weight_decay"):
        original = getattr(opt, name)
        setattr(opt, name, lambda *a, _name=name, _original=original: (called.append(_name), _original(*a))[1])
    opt.apply([keras.ops.ones((3, 2))], [w])
    assert sorted(set(called)) == ["_apply_weight_decay", "_backend_update_step"], \
        f"Keras {keras.__version__}'s optimizer.apply no longer calls {set(OPTIMIZER_HOOKS[:2]) - set(called)}"
