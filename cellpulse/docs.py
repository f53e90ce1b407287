"""Reference docs generated from the code, so they cannot drift from it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from cellpulse.settings import Settings


def _rows(model: type[BaseModel], prefix: str, env: str) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += _rows(annotation, f"{prefix}{name}.", f"{env}{name.upper()}__")
            continue
        default: Any = field.get_default(call_default_factory=True)
        rows.append(
            (f"{prefix}{name}", f"`{env}{name.upper()}`", f"`{default}`", field.description or "")
        )
    return rows


def settings_markdown() -> str:
    lines = [
        "# Settings",
        "",
        "Highest priority first: command-line flags, `CELLPULSE_*` environment variables "
        "(nested with `__`), the YAML file given by `--config` or `CELLPULSE_CONFIG` (keys "
        "as in the first column, nested as YAML mappings).",
        "",
        "| setting | environment variable | default | meaning |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{a}` | {b} | {c} | {d} |" for a, b, c, d in _rows(Settings, "", "CELLPULSE_")]
    return "\n".join(lines) + "\n"


def features_markdown(rop_minutes: int = 15) -> str:
    """Every feature of the default spec with its meaning."""
    from cellpulse.features.spec import default_spec

    spec = default_spec(rop_minutes)
    rows: list[tuple[str, str]] = [
        (k, "the KPI at this ROP (derived KPIs from this ROP's counters)") for k in spec.kpis
    ]
    if spec.calendar:
        rows += [
            ("hour", "hour of day in the network's time zone"),
            ("day_of_week", "0 = Monday … 6 = Sunday"),
            ("hour_of_week", "day_of_week * 24 + hour"),
            ("is_weekend", "Saturday or Sunday"),
        ]
    rows += [
        (f"rops_missing_{w}", f"ROPs not reported in the last {w} (this one included)")
        for w in spec.missing_windows
    ]
    for r in spec.rolling:
        rows += [
            (
                name,
                f"{stat} of {r.kpi} over the trailing {r.window} (time-based, this ROP included)",
            )
            for stat, name in zip(r.stats, r.columns(), strict=True)
        ]
    rows += [
        (lag.column(), f"{lag.kpi} exactly {lag.lag} earlier (null if not reported)")
        for lag in spec.lags
    ]
    rows += [(d.column(), f"{d.kpi} minus its value {d.vs} earlier") for d in spec.deltas]
    for b in spec.baselines:
        median, z = b.columns()
        rows += [
            (median, f"median of {b.kpi} at the same ROP in the past {b.weeks} weeks"),
            (
                z,
                f"robust z-score of {b.kpi} against that median (spread: 1.4826 × MAD, "
                "at least 5 % of the median)",
            ),
        ]
    lines = [
        "# Features",
        "",
        f"Generated from the default feature spec for {rop_minutes}-minute ROPs "
        f"(`python -m cellpulse.docs features > docs/features.md`): {len(rows)} features, "
        f"spec hash `{spec.hash()}`, lookback {spec.lookback().days} days. Every feature at "
        "`ts` uses only rows with timestamps at or before `ts`.",
        "",
        "| feature | meaning |",
        "|---|---|",
        *[f"| `{name}` | {meaning} |" for name, meaning in rows],
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    which = sys.argv[1] if len(sys.argv) > 1 else "settings"
    print(features_markdown() if which == "features" else settings_markdown(), end="")
