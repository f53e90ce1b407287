"""One typed settings object, resolved once at the edge and passed down.

Sources, highest priority first: explicit arguments (CLI flags), `CELLPULSE_*` environment
variables (nested with `__`, e.g. `CELLPULSE_TRAIN__NUM_TREES=400`), then an optional YAML
config file (`--config FILE` or `CELLPULSE_CONFIG`).
"""

from __future__ import annotations

import json
import os
from contextvars import ContextVar
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from cellpulse.errors import CellpulseError
from cellpulse.layout import Layout
from cellpulse.redaction import redact_url

_CONFIG_DATA: ContextVar[dict[str, Any] | None] = ContextVar("_CONFIG_DATA", default=None)


class SecretUrl(SecretStr):
    """A URL that may carry a credential (a password, a token in the query or the path).

    Its value is read only where it is used (`get_secret_value()`); everywhere else it
    shows as the redacted URL (repr, str, tracebacks) and serialises to JSON as
    `**********`, so a flow run's parameters stored by Prefect never hold it."""

    def _display(self) -> str:
        return redact_url(self.get_secret_value())


def _list_from_text(value: Any) -> Any:
    """A list setting given as text (an environment variable): comma-separated items
    (`north,south`) or a JSON list (`["north","south"]`); an empty text is an empty list."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)
    return [item.strip() for item in text.split(",") if item.strip()]


def _http_url(value: SecretUrl | None) -> SecretUrl | None:
    """Only http(s) URLs with a host: a webhook may not read files or speak other protocols."""
    if value is None:
        return None
    parts = urlsplit(value.get_secret_value())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        shown = f"'{parts.scheme}:'" if parts.scheme else "none"
        raise ValueError(f"must be an http:// or https:// URL with a host (scheme: {shown})")
    return value


class IngestSettings(BaseModel):
    """How strict ingest is and what it does with rows that break the contract."""

    bad_rows: Literal["quarantine", "reject_file"] = Field(
        "quarantine",
        description="Bad rows: quarantine them and accept the rest, or reject the whole file.",
    )
    succ_tolerance: float = Field(
        0.0, ge=0, description="Allowed excess of successes over attempts, as a fraction."
    )
    future_tolerance_minutes: int = Field(60, ge=0, description="How far ahead of now a ts may be.")
    retention_days: int = Field(
        1100,
        ge=1,
        description="Rows older than this many days (counted back as retention_from says) "
        "are refused; the default takes a history export of up to three years.",
    )
    retention_from: Literal["data", "now"] = Field(
        "data",
        description="What retention counts back from: the newest data (of the file or the "
        "lake, never later than now), so that a history export loads whole however long ago "
        "it ends (up to retention_days of it); or now, refusing anything older than "
        "retention_days before the clock.",
    )
    after: Literal["leave", "archive"] = Field(
        "leave",
        description="Ingested files: leave them in landing, or move them to "
        "<home>/archive once their rows are in the lake (content never changed).",
    )
    batch_rows: int = Field(
        5_000_000,
        ge=1000,
        description="Accepted rows merged into the lake per batch "
        "(bounds memory; each batch is committed to the ledger once written).",
    )
    compact_parts: int = Field(
        8,
        ge=1,
        description="Deliveries a day may hold before ingest folds them into one sorted "
        "file per region (fewer means cheaper reads, more means cheaper frequent ingests).",
    )


class RetentionDays(BaseModel):
    """Days of each lake dataset kept, counted back from the newest day of KPIs (never later
    than today); null keeps every day."""

    kpi: int | None = Field(
        400,
        ge=1,
        description="Days of KPIs kept (what features, training and backfills read). Every "
        "retention counts back from the newest KPI day, never later than today; null keeps "
        "every day.",
    )
    features: int | None = Field(
        35,
        ge=2,
        description="Features (rebuilt from the KPIs at will): scoring reads a day and the one "
        "before; training and monitoring read the training window (by default every day "
        "with features: these).",
    )
    scores: int | None = Field(
        400, ge=1, description="Published scores: evaluation, reports and monitoring read them."
    )
    expected: int | None = Field(
        35,
        ge=1,
        description="Expected bands the ops page draws (one request asks for at most "
        "api.max_days).",
    )


class HousekeepingSettings(BaseModel):
    """Disk housekeeping (`cellpulse housekeeping`, the `housekeeping-daily` deployment):
    idle KPI days compacted, days past retention removed."""

    retention_days: RetentionDays = RetentionDays()
    compact_idle_minutes: int = Field(
        60,
        ge=0,
        description="A KPI day still held as deliveries is compacted once none has arrived "
        "for this long; a day before yesterday always is.",
    )
    cron: str = Field("30 4 * * *", description="When the daily housekeeping runs.")


class MonitorSettings(BaseModel):
    """The monitoring flow: what counts as the network having changed under the models."""

    recent_days: int = Field(7, ge=1, description="Recent window compared with training.")
    sample_rows_per_day: int = Field(
        50_000, ge=1000, description="Rows sampled per day per window (bounds memory)."
    )
    psi_threshold: float = Field(
        0.25, gt=0, description="A feature with PSI above this has shifted."
    )
    retrain_drift_share: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Share of the network features that must have shifted for feature drift "
        "to count (and retrain): among a hundred features a few always cross the PSI "
        "threshold by chance or by season; a changed network moves many.",
    )
    score_psi_threshold: float = Field(
        0.25, gt=0, description="Score distribution shift (PSI) that counts."
    )
    availability_drop: float = Field(
        0.2, gt=0, le=1, description="Drop in the share of cells reporting a KPI."
    )
    topology_change_share: float = Field(
        0.05, gt=0, description="Share of cells appearing or disappearing."
    )
    min_event_recall: float = Field(
        0.5, ge=0, le=1, description="Champion recall on labelled faults below this counts."
    )
    retrain_on_drift: bool = Field(
        True, description="Run the training flow when a check is crossed."
    )


class ScheduleSettings(BaseModel):
    """When the served deployments run (`cellpulse serve`); cron strings in `timezone`."""

    every_rop: bool = Field(
        True, description="Ingest and score every ROP (interval = rop_minutes)."
    )
    rop_delay_minutes: int = Field(
        5,
        ge=0,
        description="Minutes after each ROP boundary the every-ROP run starts (files of the "
        "period just ended need time to land).",
    )
    features_cron: str = Field("0 1 * * *", description="Full feature refresh of stale days.")
    train_cron: str = Field("0 2 * * 0", description="Weekly retraining.")
    monitor_cron: str = Field("0 3 * * *", description="Daily monitoring checks.")
    timezone: str = Field("UTC", description="Time zone of the cron schedules.")
    late_after_minutes: int = Field(
        30,
        ge=1,
        description="A scheduled run starting this late (after an outage) is skipped: the "
        "next run catches up on everything pending, so late runs never pile up.",
    )


class ApiSettings(BaseModel):
    """The HTTP API and web page (`cellpulse api`)."""

    host: str = Field("127.0.0.1", description="Address to bind; loopback unless you mean it.")
    port: int = Field(8750, ge=1, le=65535, description="Port to listen on.")
    token: SecretStr | None = Field(
        None,
        description="Bearer token every route but /health requires; default: a random token "
        "kept in <home>/api_token (created on first start, readable by its owner only).",
    )
    public_url: str | None = Field(
        None,
        description="Base URL of the ops page as people reach it (for links in artifacts "
        "and webhooks); default: http://<host>:<port>.",
    )
    max_page: int = Field(500, ge=1, description="Most rows one request may return.")
    max_days: int = Field(31, ge=1, description="Longest period one request may ask for.")
    incident_rops: int = Field(
        2,
        ge=0,
        description="Alerts of cells on one site that open within this many ROPs of the "
        "first are one incident in the alert queue (a site outage is one thing to fix).",
    )


class CongestionRule(BaseModel):
    """A cell is congested when PRBs are nearly exhausted AND users get poor throughput,
    with enough users for that to matter, for several ROPs in a row.

    Each threshold is one condition; null switches it off (PRB-only: thp_floor_mbps and
    min_active_ue null). A condition whose KPI the data does not hold is left out (see
    absent_kpis); PRB utilisation or user throughput must remain, as active users alone say
    nothing about congestion."""

    prb_util_min_pct: float | None = Field(
        80.0, description="PRB utilisation (DL) at or above this; null: no PRB condition."
    )
    thp_floor_mbps: float | None = Field(
        10.0, description="User DL throughput below this; null: no throughput condition."
    )
    min_active_ue: float | None = Field(
        5.0, description="With at least this many active users; null: any number."
    )
    min_consecutive_rops: int = Field(3, ge=1, description="For this many ROPs in a row.")
    absent_kpis: Literal["leave_out", "fail"] = Field(
        "leave_out",
        description="A condition whose KPI the data does not hold: leave it out (training "
        "says which) or fail naming the KPI.",
    )
    horizon: Literal["minutes", "next_day_busy_hour"] = Field(
        "minutes",
        description="What the congestion model forecasts. minutes: congested within the next "
        "horizon_minutes; next_day_busy_hour: congested during the cell's busy hour (its "
        "clock hour with the most DL traffic, in `timezone`) of the next local day.",
    )
    horizon_minutes: int = Field(
        60, ge=1, description="Forecast horizon of the model (horizon: minutes)."
    )

    @model_validator(mode="after")
    def _some_congestion_condition(self) -> CongestionRule:
        if self.prb_util_min_pct is None and self.thp_floor_mbps is None:
            raise ValueError(
                "set prb_util_min_pct or thp_floor_mbps (or both): active users alone do "
                "not make congestion"
            )
        return self


class AlertSettings(BaseModel):
    consecutive_rops: int = Field(3, ge=1, description="Anomalous ROPs in a row before an alert.")
    clear_after_rops: int = Field(4, ge=1, description="Normal ROPs in a row that close it.")
    false_alarms_per_100_cell_days: float | None = Field(
        0.5,
        gt=0,
        le=50,
        description="False-alarm budget the anomaly model's alert threshold is calibrated "
        "to when it trains: about this many alerts per 100 cell-days on the training window "
        "(every cell, pooled). Lower: fewer alerts, small faults found later or not at all; "
        "null: the older rule, the 99.5th percentile of training scores and at least 5.",
    )
    webhook_url: SecretUrl | None = Field(
        None,
        description="POST new alerts here as JSON after each scoring run (optional; "
        "http:// or https:// only; a failing webhook is retried, then logged, and never "
        "blocks scoring). A secret: shown redacted, never stored with a flow run.",
    )
    webhook_retries: int = Field(3, ge=0, description="Retries of a failed webhook call.")
    webhook_timeout_s: float = Field(5.0, gt=0, description="Timeout of one webhook call.")

    @field_validator("webhook_url")
    @classmethod
    def _webhook_is_http(cls, value: SecretUrl | None) -> SecretUrl | None:
        return _http_url(value)


class TrainSettings(BaseModel):
    num_trees: int = Field(100, ge=1, description="Boosting rounds per LightGBM model.")
    learning_rate: float = Field(0.1, gt=0)
    num_leaves: int = Field(31, ge=2)
    min_data_in_leaf: int = Field(50, ge=1)
    early_stopping_rounds: int = Field(
        10,
        ge=0,
        description="Normal-behaviour regressors: grow trees (up to num_trees) while the "
        "newest training day's error improves, stop after this many rounds without "
        "improvement, then refit on every training day with the best count. Fewer trees "
        "score faster and generalise better; 0 always grows num_trees.",
    )
    min_kpi_coverage: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Share of training rows a KPI must hold a value in for the anomaly "
        "model to watch it (and to check it for frozen counters); the others are left out "
        "and the training summary says why. Success ratios are null by design on quiet "
        "ROPs (min_denominator), so a sound ratio may hold values in only half the rows.",
    )
    n_jobs: int = Field(2, ge=1, description="LightGBM threads.")
    seed: int = Field(42, description="Same seed and data, same model and scores.")
    holdout_days: int = Field(3, ge=1, description="Newest days held out for evaluation.")
    max_train_rows: int = Field(2_000_000, ge=1000, description="Rows sampled for fitting.")
    max_train_cells: int = Field(
        5000,
        ge=1,
        description="Cells training reads (picked by a hash of cell_id and the seed): their "
        "rows are sampled while reading, every day in proportion, and only their KPIs are "
        "read for the congestion labels, so training's memory stays flat however large the "
        "network is.",
    )
    holdout_cells: int = Field(
        2000,
        ge=1,
        description="Cells the hold-out days are read whole for (among the training cells): "
        "the hold-out metrics judge every ROP of these cells, as alerts need consecutive ROPs.",
    )
    promotion_margin: float = Field(
        0.0, ge=0, description="How much the challenger must beat the champion by."
    )
    guard_tolerance: float = Field(
        0.02, ge=0, description="How much worse a guard metric may get before promotion is refused."
    )
    gate_false_alarms_per_100_cell_days: float = Field(
        0.5,
        ge=0,
        description="The false-alarm budget anomaly detectors are compared at (alerts per 100 "
        "cell-days): the hold-out and the scoreboard give each detector's event recall at "
        "the threshold that spends this budget (`recall_at_budget`), so a detector that "
        "alerts more does not look better for it; with labelled events the promotion gate "
        "judges by it (PR-AUC guards it and breaks ties).",
    )
    supervised: Literal["blend", "replace", "off"] = Field(
        "blend",
        description="With labelled faults in the training window (the simulator's ground "
        "truth or `train --labels FILE`), also fit a LightGBM fault classifier. blend: the "
        "anomaly score is the stronger of the two models' evidence (either alone can raise "
        "an alert); replace: the classifier's alone; off: unsupervised only.",
    )
    supervised_min_events: int = Field(
        5,
        ge=1,
        description="Labelled fault events the training window needs before a classifier "
        "is fitted (fewer teach it nothing general).",
    )
    calibration_days: int = Field(
        0,
        ge=0,
        description="Newest days of the training window held back to calibrate the "
        "congestion probability (isotonic); 0: no calibration (on the demo network, the "
        "booster then sees those days and ranks better, at the same Brier score).",
    )
    dask_min_rows: int = Field(
        1_000_000,
        ge=1,
        description="With dask_address set, a model whose training rows reach this trains "
        "with LightGBM's Dask interface across the cluster; smaller ones train locally.",
    )


class Settings(BaseSettings):
    """Everything cellpulse needs to know about this installation."""

    model_config = SettingsConfigDict(
        env_prefix="CELLPULSE_",
        env_nested_delimiter="__",
        extra="forbid",
        env_parse_none_str="null",  # CELLPULSE_CONGESTION__THP_FLOOR_MBPS=null switches it off
    )

    home: Path = Field(Path(".cellpulse"), description="Folder holding everything (--home).")
    rop_minutes: Literal[5, 15, 60] = Field(
        15, description="Reporting period length in minutes: 5, 15 or 60."
    )
    timezone: str = Field("UTC", description="Network-local time zone for calendar features.")
    # NoDecode: the environment gives lists as comma-separated text, not only as JSON.
    holidays: Annotated[list[date], NoDecode] = Field(
        default_factory=list,
        description="Public holidays (YYYY-MM-DD, local dates) for the is_holiday feature; "
        "in the environment comma-separated (2026-12-25,2026-12-26).",
    )
    regions: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Regions this installation may hold; empty = any; in the environment "
        "comma-separated (north,south).",
    )
    score_engine: Literal["lightgbm", "compiled"] = Field(
        "lightgbm",
        description="compiled: score with the LightGBM models compiled to native code "
        "(treelite/tl2cgen + gcc, cached in <home>/compiled): the same scores, faster "
        "(bench/RESULTS.md, Scoring).",
    )
    keep_freed_memory: bool = Field(
        True,
        description="Keep memory freed by large arrays for reuse instead of returning it to "
        "the system at once (glibc): faster feature and scoring steps, for a resident size "
        "that stays near its peak; set false on hosts where memory must go back promptly.",
    )
    feature_chunk_cells: int = Field(
        10_000,
        ge=1,
        description="Cells whose features are built at once (whole sites); bounds memory.",
    )
    min_denominator: int = Field(
        10, ge=1, description="Fewer attempts than this make a success ratio null, not noise."
    )
    ops_store_url: SecretUrl | None = Field(
        None,
        description="PostgreSQL URL for the ops store (postgresql://user:pass@host/db); "
        "default: the DuckDB file <home>/ops.duckdb. A secret: shown redacted, never stored "
        "with a flow run.",
    )
    dask_address: str | None = Field(
        None,
        description="Fan features and scoring out over days on Dask: a scheduler address "
        "(tcp://host:8786), or 'local' for a cluster on this machine; default: one process.",
    )
    dask_workers: int = Field(2, ge=1, description="Workers of a 'local' Dask cluster.")
    mlflow_tracking_uri: SecretUrl | None = Field(
        None,
        description="MLflow tracking server; default: SQLite under home. A secret (it may "
        "hold a password): shown redacted, never stored with a flow run.",
    )
    ingest: IngestSettings = IngestSettings()
    congestion: CongestionRule = CongestionRule()
    alerts: AlertSettings = AlertSettings()
    train: TrainSettings = TrainSettings()
    api: ApiSettings = ApiSettings()
    monitor: MonitorSettings = MonitorSettings()
    schedules: ScheduleSettings = ScheduleSettings()
    housekeeping: HousekeepingSettings = HousekeepingSettings()

    @field_validator("rop_minutes", mode="before")
    @classmethod
    def _rop_from_text(cls, value: Any) -> Any:
        # An environment variable is text: "60" must match the literal 60.
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value

    @field_validator("holidays", "regions", mode="before")
    @classmethod
    def _lists_from_text(cls, value: Any) -> Any:
        return _list_from_text(value)

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ConfigFileSource(settings_cls))

    @property
    def layout(self) -> Layout:
        """Where every folder, file and dataset of this home lives."""
        return Layout(self.home)

    @property
    def ops_page_url(self) -> str:
        return self.api.public_url or f"http://{self.api.host}:{self.api.port}"

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri is not None:
            return self.mlflow_tracking_uri.get_secret_value()
        return f"sqlite:///{self.layout.mlflow_db}"


class _ConfigFileSource(PydanticBaseSettingsSource):
    """The YAML config file, lowest priority, read by `load_settings`."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_CONFIG_DATA.get() or {})


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Resolve settings from flags (`overrides`, None means not given), env and config file."""
    path = config or (
        Path(os.environ["CELLPULSE_CONFIG"]) if "CELLPULSE_CONFIG" in os.environ else None
    )
    data: dict[str, Any] = {}
    if path is not None:
        if not path.is_file():
            raise CellpulseError(f"config file {path} does not exist: pass an existing YAML file")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise CellpulseError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise CellpulseError(f"config file {path} must hold a mapping of setting: value")
        data = loaded
    token = _CONFIG_DATA.set(data)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except Exception as exc:  # pydantic's ValidationError, made one line
        raise CellpulseError(f"invalid settings: {_one_line(exc)}") from exc
    finally:
        _CONFIG_DATA.reset(token)


def _one_line(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors()]
        return "; ".join(parts)
    return str(exc).splitlines()[0]
