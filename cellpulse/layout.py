"""Where everything of a cellpulse home lives: the one answer to "where is X".

Every stage, the API and the CLI ask a `Layout` for a folder, a file or a lake dataset
instead of joining paths themselves, so moving a dataset is a change in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cellpulse.lake import Dataset

# The simulator's ground truth: the files it writes into a truth folder, and readers find.
TRUTH_EVENTS_FILE = "events.parquet"
TRUTH_CONGESTION_FILE = "congestion.parquet"
TRUTH_TOPOLOGY_FILE = "topology.parquet"


@dataclass(frozen=True)
class Layout:
    """The folders, files and lake datasets under one home (see ARCHITECTURE.md, Storage)."""

    home: Path

    # Folders
    @property
    def landing(self) -> Path:
        """Incoming PM files; the pipeline never modifies them."""
        return self.home / "landing"

    @property
    def quarantine(self) -> Path:
        """Rejected files and rows, with a reason report per file."""
        return self.home / "quarantine"

    @property
    def archive(self) -> Path:
        """Landing files moved aside after ingest (`ingest.after: archive`)."""
        return self.home / "archive"

    @property
    def lake(self) -> Path:
        return self.home / "lake"

    @property
    def ground_truth(self) -> Path:
        """The simulator's injected events and topology."""
        return self.home / "ground_truth"

    @property
    def labels(self) -> Path:
        """Labels files people made (`cellpulse labels`)."""
        return self.home / "labels"

    @property
    def reports(self) -> Path:
        """Scoreboard reports (JSON), one per evaluated window."""
        return self.home / "reports"

    @property
    def compiled(self) -> Path:
        """Models compiled to native code, cached per model version."""
        return self.home / "compiled"

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    @property
    def mlartifacts(self) -> Path:
        return self.home / "mlartifacts"

    # Files
    @property
    def ledger(self) -> Path:
        """Which input files were ingested (content hash, rows, outcome) and stale days."""
        return self.home / "ledger.sqlite"

    @property
    def ops_store(self) -> Path:
        """The embedded ops store (scores, alerts, actions) when no ops_store_url is set."""
        return self.home / "ops.duckdb"

    @property
    def api_token(self) -> Path:
        return self.home / "api_token"

    @property
    def mlflow_db(self) -> Path:
        return self.home / "mlflow.db"

    @property
    def truth_events(self) -> Path:
        """The simulator's labelled events: the default labels of train, evaluate, backtest."""
        return self.ground_truth / TRUTH_EVENTS_FILE

    @property
    def truth_topology(self) -> Path:
        """The simulator's topology (cells, sites, area types), for per-slice metrics."""
        return self.ground_truth / TRUTH_TOPOLOGY_FILE

    @property
    def prefect_server_log(self) -> Path:
        """What the temporary Prefect server of a command printed."""
        return self.prefect_home / "server.log"

    @property
    def operator_labels(self) -> Path:
        """People's verdicts on alerts, as written by `cellpulse labels`."""
        return self.labels / "operator.parquet"

    @property
    def rop_state(self) -> Path:
        """What the every-ROP run carries to the next: the newest ROP published, the
        feature rows of the ROPs just before it, the alerts still open (cellpulse.ropstate)."""
        return self.home / "rop_state"

    def labels_file(self, given: Path | None) -> Path:
        """The labelled events a command reads: the file given, else the simulator's."""
        return given if given is not None else self.truth_events

    # Lake datasets
    @property
    def kpi(self) -> Dataset:
        """Contract-shaped KPIs, as ingested."""
        return Dataset(self.lake / "kpi")

    @property
    def features(self) -> Dataset:
        # Rebuilt from the KPIs at will and read by every scoring and training run: lz4.
        return Dataset(self.lake / "features", fast=True)

    @property
    def scores(self) -> Dataset:
        """Published scores (the output contract)."""
        return Dataset(self.lake / "scores")

    @property
    def expected(self) -> Dataset:
        """Per cell and ROP, each watched KPI with the anomaly model's expected value and
        band (what the ops page draws)."""
        return Dataset(self.lake / "expected")
