"""What model code reads of an installation's settings, as one frozen value: training,
judging and scoring take it in their signatures (a test builds only these), the flows build
it once from the whole settings (`ModelParams.of(settings)`)."""

from __future__ import annotations

from dataclasses import dataclass

from cellpulse.settings import AlertSettings, CongestionRule, Settings, TrainSettings


@dataclass(frozen=True)
class ModelParams:
    """How models train (`train`), what counts as congestion (`congestion`), when flagged
    ROPs raise and clear an alert (`alerts`), the ROP length and the network's time zone
    (congestion labels are counted in local days), and the fewest attempts a success ratio
    is computed from."""

    train: TrainSettings
    congestion: CongestionRule
    alerts: AlertSettings
    rop_minutes: int
    timezone: str
    min_denominator: int  # success ratios from fewer attempts are null (scoreboard KPIs)

    @classmethod
    def of(cls, settings: Settings) -> ModelParams:
        """The model parameters configured in `settings`."""
        return cls(
            settings.train,
            settings.congestion,
            settings.alerts,
            settings.rop_minutes,
            settings.timezone,
            settings.min_denominator,
        )
