"""The paper's plateau schedule, in steps (Section 5; defect 2 of the chance-level runs)."""

import numpy as np

from alexnet_split.schedule import Plateau

CHANCE = 1 / 17


def scripted_curve(step):
    """Validation accuracy of a towers run under the paper's init: at chance for 2,000 steps,
    rising to 0.6 by step 4,000, then flat; +-1 image of 340 of noise throughout."""
    noise = ((step * 7919) % 3 - 1) / 340
    if step <= 2000:
        return CHANCE + noise
    return min(0.6, CHANCE + (0.6 - CHANCE) * (step - 2000) / 2000) + noise


def run(schedule, every=50, cap=10_000):
    actions = {}
    for step in range(every, cap + 1, every):
        action = schedule.update(step, scripted_curve(step))
        if action:
            actions[step] = action
        if action == "stop":
            break
    return actions


def test_lr_drops_only_on_the_late_plateau_then_the_run_stops():
    schedule = Plateau(patience=1000, max_drops=3, num_classes=17)
    actions = run(schedule)
    drops = [s for s, a in actions.items() if a == "drop"]
    assert len(drops) == 3 and min(drops) > 4000, actions  # none during the initial chance plateau
    assert drops == schedule.drop_steps
    first_above = min(s for s in range(50, 10_001, 50) if scripted_curve(s) > 2 * CHANCE)
    assert schedule.left_chance_step == first_above > 2000
    # each drop waits a full patience after the last improvement or drop
    assert np.all(np.diff([schedule.best_step, *drops]) >= 0)
    assert [b - a for a, b in zip(drops, drops[1:], strict=False)] == [1000, 1000]
    stop = [s for s, a in actions.items() if a == "stop"]
    assert stop == [drops[-1] + 1000] and schedule.stop_step == stop[0]
    assert schedule.update(stop[0] + 50, 0.9) == "stop"  # a stopped schedule stays stopped


def test_a_dead_run_ends_after_give_up_steps_and_says_why():
    schedule = Plateau(patience=1000, max_drops=3, num_classes=17, give_up=5000)
    actions = {step: schedule.update(step, CHANCE) for step in range(50, 5001, 50)}
    assert [s for s, a in actions.items() if a] == [5000] and actions[5000] == "stop"
    assert schedule.stop_reason() == "dead: validation never above 2x chance in 5000 steps"


def test_give_up_never_fires_once_validation_left_chance():
    """The scripted run leaves chance at ~2,000 steps: a give-up at 1,000 would have killed it,
    one at 2,500 does not, and its end is the paper's plateau rule."""
    assert run(Plateau(patience=1000, max_drops=3, num_classes=17, give_up=1000)) == {1000: "stop"}
    late = Plateau(patience=1000, max_drops=3, num_classes=17, give_up=2500)
    actions = run(late)
    assert list(actions.values()) == ["drop"] * 3 + ["stop"]
    assert late.stop_reason() == "plateau after 3 lr drops"


def test_without_give_up_a_run_that_never_leaves_chance_never_drops_and_never_stops():
    schedule = Plateau(patience=100, max_drops=3, num_classes=17)
    assert all(schedule.update(step, CHANCE) is None for step in range(50, 20_000, 50))
    assert schedule.left_chance_step is None and schedule.drop_steps == []


def test_no_patience_means_a_fixed_learning_rate():
    schedule = Plateau(patience=None, max_drops=0, num_classes=17)
    assert all(schedule.update(step, 0.5) is None for step in range(1, 5000))


def test_state_round_trip_continues_identically():
    """A resumed run rebuilds the schedule from state.json and must act as if never stopped."""
    whole = Plateau(patience=1000, max_drops=3, num_classes=17)
    first = Plateau(patience=1000, max_drops=3, num_classes=17)
    for step in range(50, 5001, 50):
        whole.update(step, scripted_curve(step))
        first.update(step, scripted_curve(step))
    resumed = Plateau.from_dict(first.to_dict())
    for step in range(5050, 10_001, 50):
        assert resumed.update(step, scripted_curve(step)) == whole.update(step, scripted_curve(step))
    assert resumed == whole


def test_exactly_twice_chance_has_not_left_chance():
    """"Above 2x chance" is strict: 40 of 340 validation images is exactly 2/17 and does not count."""
    p = Plateau(patience=100, max_drops=3, num_classes=17)
    assert 40 / 340 == p.threshold
    p.update(50, 40 / 340)
    assert p.left_chance_step is None
    p.update(100, 41 / 340)
    assert p.left_chance_step == 100
