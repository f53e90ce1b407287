"""The promotion gate: a pure decision with a reason a person can read."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PromotionRule:
    """Primary metric must improve by `margin`; guard metrics may not get worse by more than
    `tolerance`. `higher_is_better` maps each metric to its direction. A coarse primary
    (recall over a handful of events) ties often: on a tie with the champion, a `secondary`
    metric that improves by more than `margin` decides instead."""

    primary: str
    guards: tuple[str, ...] = ()
    margin: float = 0.0
    tolerance: float = 0.02
    higher_is_better: Mapping[str, bool] | None = None
    secondary: str | None = None

    def better(self, metric: str) -> bool:
        return True if self.higher_is_better is None else self.higher_is_better.get(metric, True)


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


# Metrics equal up to float noise count as equal (1 - 1e-16 is not "worse" than 1.0).
_EPS = 1e-9


def _gain(rule: PromotionRule, metric: str, new: float, old: float) -> float:
    gain = new - old if rule.better(metric) else old - new
    return 0.0 if abs(gain) < _EPS else gain


def decide_promotion(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    baseline: Mapping[str, float],
    rule: PromotionRule,
) -> Decision:
    """Promote when the challenger wins on the same hold-out. Against a champion it must be
    better by more than the margin (a tie keeps the model ops already trust); the first model
    must only be at least as good as the best simple baseline."""
    name = rule.primary
    new = challenger.get(name, math.nan)
    if math.isnan(new):
        return Decision(False, f"challenger has no {name} on the hold-out; nothing to judge by")
    ref_name, ref = ("champion", champion) if champion is not None else ("baseline", baseline)
    old = ref.get(name, math.nan)
    if math.isnan(old):
        return Decision(
            True, f"{ref_name} has no {name} on this hold-out; challenger {name}={new:.4f} taken"
        )
    gain = _gain(rule, name, new, old)
    if champion is None and gain < rule.margin:
        return Decision(
            False,
            f"challenger {name}={new:.4f} is worse than the baseline "
            f"{old:.4f} (margin {rule.margin:g}); no champion yet",
        )
    tie_broken = ""
    if champion is not None and gain == 0 and rule.secondary is not None:
        tie_broken = _break_tie(challenger, champion, rule, rule.secondary)
    if champion is not None and gain <= rule.margin and not tie_broken:
        return Decision(
            False,
            f"challenger {name}={new:.4f} does not beat champion "
            f"{old:.4f} by more than {rule.margin:g}; champion stays",
        )
    if champion is not None:
        for guard in rule.guards:
            g_new, g_old = challenger.get(guard, math.nan), champion.get(guard, math.nan)
            if (
                not (math.isnan(g_new) or math.isnan(g_old))
                and _gain(rule, guard, g_new, g_old) < -rule.tolerance
            ):
                return Decision(
                    False,
                    f"challenger beats champion on {name} ({new:.4f} vs "
                    f"{old:.4f}) but {guard} worsens beyond tolerance "
                    f"({g_new:.4f} vs {g_old:.4f})",
                )
    verb = "beats" if gain > 0 else "matches"
    return Decision(
        True,
        f"challenger {name}={new:.4f} {verb} {ref_name} {old:.4f}{tie_broken} "
        f"(margin {rule.margin:g})",
    )


def _break_tie(
    challenger: Mapping[str, float],
    champion: Mapping[str, float],
    rule: PromotionRule,
    metric: str,
) -> str:
    """Why the challenger wins a tie on the primary metric (by more than the margin on
    `metric`), or "" when it does not."""
    new, old = challenger.get(metric, math.nan), champion.get(metric, math.nan)
    if math.isnan(new) or math.isnan(old) or _gain(rule, metric, new, old) <= rule.margin:
        return ""
    return f" and beats it on {metric} ({new:.4f} vs {old:.4f})"
