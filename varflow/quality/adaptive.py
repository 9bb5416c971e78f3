"""The seed's AdaptiveQualityManager as a small state machine.

Each processed image contributes its success rate (accepted / attempts). Once five are known,
the mean of the last five moves the level: below 0.5 at high -> medium; below 0.3 at medium ->
low (one step at a time); above 0.8 anywhere below high -> straight back to high.

Deviation from the seed: the seed never cleared its window, so right after high -> medium the
same five results (produced at *high*) immediately pushed medium -> low, one image later; the
"one step at a time" downgrade cascaded on stale evidence. Here a level is judged only on images
processed at that level: the window restarts at every change, and a result produced at another
level (an image already in flight when the level changed) is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from varflow.settings import LEVEL_ORDER, LevelSettings, level_settings

WINDOW = 5


@dataclass(frozen=True)
class LevelChange:
    from_level: str
    to_level: str
    window_average: float
    reason: str


@dataclass
class AdaptiveQuality:
    level: str = "high"
    history: list[float] = field(default_factory=list)
    window: int = WINDOW

    def __post_init__(self) -> None:
        level_settings(self.level)  # validates the name

    @property
    def settings(self) -> LevelSettings:
        return level_settings(self.level)

    def record(self, success_rate: float, *, level: str | None = None) -> LevelChange | None:
        """Add one image's success rate (``level``: the level it was processed at)."""
        if not 0.0 <= success_rate <= 1.0:
            raise ValueError(f"success rate {success_rate} must lie in [0, 1]")
        if level is not None and level != self.level:
            return None  # evidence about another level
        self.history.append(success_rate)
        if len(self.history) > 100 * self.window:  # only the window matters; keep it bounded
            del self.history[: -self.window]
        if len(self.history) < self.window:
            return None
        avg = sum(self.history[-self.window :]) / self.window
        new, reason = self.level, ""
        if avg < 0.5 and self.level == "high":
            new, reason = "medium", f"mean success {avg:.2f} of the last {self.window} images < 0.5 at high"
        elif avg < 0.3 and self.level == "medium":
            new, reason = "low", f"mean success {avg:.2f} of the last {self.window} images < 0.3 at medium"
        elif avg > 0.8 and self.level != "high":
            new, reason = "high", f"mean success {avg:.2f} of the last {self.window} images > 0.8: restore high"
        if new == self.level:
            return None
        change = LevelChange(self.level, new, avg, reason)
        self.level = new
        self.history.clear()
        return change


assert LEVEL_ORDER == ("high", "medium", "low")
