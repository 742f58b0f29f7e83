"""The paper's learning-rate schedule, measured in SGD steps (Krizhevsky et al. 2012, Section 5).

"The heuristic which we followed was to divide the learning rate by 10 when the validation error
rate stopped improving with the current learning rate. [...] reduced three times prior to
termination." Under the paper's initialisation a net can sit at chance for a long time before it
learns, so:

* patience is counted in steps, whatever the validation interval;
* the clock runs only once validation has left chance (accuracy above ``CHANCE_FACTOR`` times
  chance), so a flat start is never read as a plateau;
* after ``max_drops`` drops, one more plateau ends the run ("prior to termination");
* a run still at chance after ``give_up`` steps ends as dead, so it costs at most that many steps.

:class:`Plateau` is plain data (``to_dict`` / ``from_dict``) so that a resumed run continues the
schedule exactly where the killed one left it. docs/training.md tells how the rule came about.
"""

from __future__ import annotations

import dataclasses

# Validation accuracy above this many times chance counts as having left chance.
CHANCE_FACTOR = 2.0


@dataclasses.dataclass
class Plateau:
    """Decides, after each validation, whether to divide the learning rate by 10 or to stop.

    Args:
      patience: steps without a better validation accuracy (at the current learning rate)
        before acting; ``None``: a fixed learning rate, never stop early.
      max_drops: learning-rate drops before the next plateau ends the run (the paper: 3).
      num_classes: sets chance, ``1 / num_classes``.
      give_up: steps after which a run whose validation never left chance stops (``None``: never).
    """

    patience: int | None
    max_drops: int
    num_classes: int
    best: float = -1.0
    best_step: int = 0
    left_chance_step: int | None = None
    drop_steps: list[int] = dataclasses.field(default_factory=list)
    stop_step: int | None = None
    give_up: int | None = None

    @property
    def threshold(self) -> float:
        return CHANCE_FACTOR / self.num_classes

    def update(self, step: int, val_accuracy: float) -> str | None:
        """Record the validation accuracy measured after `step` steps; returns ``"drop"`` (divide
        the learning rate by 10 now), ``"stop"`` (end the run) or ``None``."""
        if self.stop_step is not None:
            return "stop"
        if val_accuracy > self.best:
            self.best, self.best_step = val_accuracy, step
        if self.left_chance_step is None and val_accuracy > self.threshold:
            self.left_chance_step = step
        if self.dead_at(step):
            self.stop_step = step
            return "stop"
        if self.patience is None or self.left_chance_step is None:
            return None
        since = max([self.best_step, *self.drop_steps])  # "with the current learning rate"
        if step - since < self.patience:
            return None
        if len(self.drop_steps) < self.max_drops:
            self.drop_steps.append(step)
            return "drop"
        self.stop_step = step
        return "stop"

    def dead_at(self, step: int) -> bool:
        """Whether a run still at chance after `step` steps is given up."""
        return self.left_chance_step is None and self.give_up is not None and step >= self.give_up

    def stop_reason(self) -> str:
        """Why :meth:`update` said ``"stop"``, as final.json's ``stopped_by`` records it."""
        if self.left_chance_step is None:
            return f"dead: validation never above {CHANCE_FACTOR:g}x chance in {self.stop_step} steps"
        return f"plateau after {len(self.drop_steps)} lr drops"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Plateau:
        return cls(**d)
