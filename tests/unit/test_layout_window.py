"""Where things live (Layout) and which days a command covers (DayWindow)."""

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from cellpulse.errors import NoDataError
from cellpulse.layout import Layout
from cellpulse.window import DayWindow

D = date.fromisoformat


def test_every_dataset_and_file_of_a_home_lives_under_it(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    places = [
        layout.landing,
        layout.quarantine,
        layout.archive,
        layout.ledger,
        layout.ops_store,
        layout.api_token,
        layout.truth_events,
        layout.operator_labels,
        layout.compiled,
        layout.kpi.root,
        layout.features.root,
        layout.scores.root,
        layout.expected.root,
    ]
    assert all(p.is_relative_to(tmp_path) for p in places)
    assert len(set(places)) == len(places)
    assert layout.features.fast and not layout.kpi.fast


def test_labels_default_to_the_simulators_events_unless_a_file_is_given(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    assert layout.labels_file(None) == tmp_path / "ground_truth" / "events.parquet"
    assert layout.labels_file(Path("mine.csv")) == Path("mine.csv")


def test_a_window_selects_the_days_with_data_inside_it() -> None:
    have = [D("2024-05-01"), D("2024-05-02"), D("2024-05-04"), D("2024-05-05")]
    assert DayWindow().resolve(have) == have
    assert DayWindow(D("2024-05-02"), D("2024-05-04")).resolve(have) == have[1:3]
    assert DayWindow(end=D("2024-05-02")).resolve(have) == have[:2]
    assert DayWindow(start=D("2024-05-05")).resolve(reversed(have)) == have[3:]


def test_a_window_without_data_says_what_the_data_covers() -> None:
    have = [D("2024-05-01"), D("2024-05-02")]
    with pytest.raises(NoDataError, match="data covers 2024-05-01 to 2024-05-02"):
        DayWindow(D("2024-06-01"), D("2024-06-03")).resolve(have)
    with pytest.raises(NoDataError, match="no ingested KPIs yet"):
        DayWindow().resolve([])


def test_a_swapped_window_is_refused_once_where_it_is_made() -> None:
    with pytest.raises(NoDataError, match="swap them"):
        DayWindow(D("2024-05-03"), D("2024-05-01"))


def test_a_window_reads_command_line_values_and_round_trips_its_text() -> None:
    at = datetime(2024, 5, 3, 17, 45, tzinfo=UTC)
    window = DayWindow.of(at, D("2024-05-09"))
    assert window == DayWindow(D("2024-05-03"), D("2024-05-09"))
    assert DayWindow.parse(str(window)) == window
    assert DayWindow.parse("..2024-05-09") == DayWindow(end=D("2024-05-09"))
    assert window.every_day()[0] == D("2024-05-03") and len(window.every_day()) == 7
    with pytest.raises(ValueError, match=r"FROM\.\.TO"):
        DayWindow.parse("2024-05-03")
    with pytest.raises(ValueError, match="open"):
        DayWindow(start=D("2024-05-03")).every_day()
