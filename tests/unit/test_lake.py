"""The lake's partitions: deliveries appended as deltas read like a merged partition, and
compaction folds them in without changing what a reader sees."""

import hashlib
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from cellpulse import lake
from cellpulse.errors import ContractError

DAY = date(2026, 1, 5)
T0 = datetime(2026, 1, 5, tzinfo=UTC)


def rows(cells: list[str], value: float, region: str = "north", hours: int = 2) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "cell_id": [c for c in cells for _ in range(hours)],
            "ts": [T0 + timedelta(hours=h) for _ in cells for h in range(hours)],
            "region": region,
            "v": value,
        }
    )


def test_deltas_apply_in_delivery_order_and_compaction_changes_nothing_a_reader_sees(tmp_path):
    ds = lake.Dataset(tmp_path / "kpi")
    ds.append(rows(["b", "a"], 1.0), DAY)
    ds.append(rows(["a"], 2.0, hours=1), DAY)  # corrects a at 00:00
    ds.append(rows(["c"], 3.0, region="south"), DAY)
    assert [f.parent.name for f in ds.deltas(DAY)] == [
        "delta-000001",
        "delta-000002",
        "delta-000003",
    ]
    before = ds.read()
    assert before.select("cell_id", "v").rows() == [
        ("a", 2.0),
        ("a", 1.0),
        ("b", 1.0),
        ("b", 1.0),
        ("c", 3.0),
        ("c", 3.0),
    ]
    assert ds.read(columns=["v"]).columns == ["v"]
    assert ds.compact(DAY) == 1  # one stored row superseded
    assert ds.deltas(DAY) == []
    assert sorted(p.parent.name for p in ds.files()) == ["region=north", "region=south"]
    assert ds.read().equals(before)
    assert ds.compact(DAY) == 0


def test_a_key_moving_region_lives_in_one_partition_after_compaction(tmp_path):
    ds = lake.Dataset(tmp_path / "kpi")
    ds.append(rows(["a"], 1.0, region="north"), DAY)
    ds.compact(DAY)
    ds.append(rows(["a"], 5.0, region="south"), DAY)
    assert ds.read()["region"].to_list() == ["south", "south"]
    ds.compact(DAY)
    assert [p.parent.name for p in ds.files()] == ["region=south"]
    assert not (ds.day_dir(DAY) / "region=north").exists()


def test_dates_count_days_that_only_hold_deltas(tmp_path):
    ds = lake.Dataset(tmp_path / "kpi")
    ds.append(rows(["a"], 1.0), DAY)
    assert ds.dates() == [DAY]
    assert ds.read(DAY + timedelta(days=1)).is_empty()


def test_key_order_is_recognised_and_only_unsorted_frames_are_sorted():
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    rows = pl.DataFrame(
        {
            "cell_id": ["a", "a", "b", "b"],
            "ts": [t0, t0 + timedelta(minutes=15), t0, t0 + timedelta(minutes=15)],
            "v": [1, 2, 3, 4],
        }
    )
    assert lake.in_key_order(rows)
    assert lake.by_keys(rows) is rows  # nothing to do, nothing copied
    swapped = rows[[1, 0, 2, 3]]
    assert not lake.in_key_order(swapped)
    assert lake.by_keys(swapped).equals(rows)
    assert not lake.in_key_order(rows[[0, 0, 1]])  # a key twice is not an order
    assert not lake.in_key_order(rows[[2, 3, 0, 1]])


def test_a_frame_sorted_region_by_region_is_cut_where_its_order_breaks():
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    ts = [t0, t0 + timedelta(minutes=15)]
    north = pl.DataFrame({"cell_id": ["b", "b", "d", "d"], "ts": ts * 2})
    south = pl.DataFrame({"cell_id": ["a", "a", "c", "c"], "ts": ts * 2})
    segments = lake.key_ordered_segments(pl.concat([north, south]))
    assert segments is not None and [s.height for s in segments] == [4, 4]
    assert segments[0].equals(north) and segments[1].equals(south)
    # A cell in two segments cannot be scored in pieces: no segments.
    assert lake.key_ordered_segments(pl.concat([north, north.head(1)])) is None
    # Rows in no order at all: sorting beats cutting into thousands of pieces.
    many = pl.DataFrame({"cell_id": [f"c{i:04d}" for i in range(200)][::-1], "ts": [t0] * 200})
    assert lake.key_ordered_segments(many) is None


def test_deltas_apply_to_their_own_day_only_beside_compacted_days(tmp_path):
    ds = lake.Dataset(tmp_path / "kpi")
    later = DAY + timedelta(days=1)

    def on(day: date, frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(pl.col("ts") + (day - DAY))

    ds.replace_day(rows(["a", "b"], 5.0), DAY)  # compacted
    ds.replace_day(on(DAY + timedelta(days=2), rows(["a"], 7.0)), DAY + timedelta(days=2))
    ds.append(on(later, rows(["b", "a"], 1.0)), later)
    ds.append(on(later, rows(["b"], 2.0, hours=1)), later)  # corrects b at 00:00
    got = ds.read()
    assert got.height == 4 + 4 + 2
    assert got["ts"].dt.date().to_list() == [DAY] * 4 + [later] * 4 + [DAY + timedelta(days=2)] * 2
    day_two = got.filter(pl.col("ts").dt.date() == later)
    assert day_two.select("cell_id", "v").rows() == [("a", 1.0), ("a", 1.0), ("b", 2.0), ("b", 1.0)]
    only_b = ds.read_days([DAY, later], columns=["v"], cells=("b", "b"))
    assert only_b["v"].to_list() == [5.0, 5.0, 2.0, 1.0]


def test_written_and_adopted_fragments_apply_in_delivery_order_whatever_their_format(tmp_path):
    ds = lake.Dataset(tmp_path / "kpi")
    ds.append(rows(["a", "b"], 1.0), DAY)
    ds.compact(DAY)  # a parquet part under the deliveries
    landing = tmp_path / "landing.parquet"
    for value, adopted in [(2.0, True), (3.0, False), (4.0, True)]:
        delivery = rows(["a"], value, hours=1 if value < 4 else 2)
        stream = lake.DeltaStream(ds)
        if adopted:  # a landing file taken over byte for byte stays parquet
            lake.atomic_write_parquet(delivery, landing)
            stream.adopt(
                DAY, "north", landing, hashlib.sha256(landing.read_bytes()).hexdigest(), delivery
            )
        else:
            stream.write(DAY, "north", delivery)
        stream.commit()
    assert [f.suffix for f in ds.deltas(DAY)] == [".parquet", lake.FRAGMENT_SUFFIX, ".parquet"]
    expected = [("a", 4.0), ("a", 4.0), ("b", 1.0), ("b", 1.0)]
    assert ds.read().select("cell_id", "v").rows() == expected
    assert ds.read_days([DAY], region="north", cells=("a", "a"))["v"].to_list() == [4.0, 4.0]
    ds.compact(DAY)
    assert ds.read().select("cell_id", "v").rows() == expected


def test_regions_split_into_their_own_rows_in_order():
    many = pl.concat(rows([f"c{i}"], float(i), region=f"r{i % 6}", hours=1) for i in range(12))
    for df in [
        rows(["a", "b"], 1.0),  # one region
        pl.concat([rows(["a"], 1.0, "south"), rows(["b"], 2.0, "north"), rows(["c"], 3.0)]),
        many,  # more regions than a filter each is worth
    ]:
        parts = list(lake.split_regions(df))
        assert [region for region, _ in parts] == sorted(df["region"].unique())
        for region, part in parts:
            assert part.equals(df.filter(pl.col("region") == region))
        assert sum(part.height for _, part in parts) == df.height


@pytest.mark.parametrize("region", ["../../../../x", "a/b", "r" * 300, "a\0b", "/abs"])
def test_the_lake_refuses_a_region_that_is_not_one_folder_name(tmp_path, region):
    dataset = lake.Dataset(tmp_path / "lake" / "kpi")
    with pytest.raises(ContractError, match="cannot be a partition folder"):
        dataset.write_partition(rows(["a"], 1.0), DAY, region)
    with pytest.raises(ContractError, match="cannot be a partition folder"):
        lake.DeltaStream(dataset).write(DAY, region, rows(["a"], 1.0))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_the_lake_refuses_a_partition_that_resolves_outside_it(tmp_path):
    dataset = lake.Dataset(tmp_path / "lake" / "kpi")
    outside = tmp_path / "outside"
    outside.mkdir()
    dataset.root.mkdir(parents=True)
    dataset.day_dir(DAY).symlink_to(outside)  # a link planted in the lake
    with pytest.raises(ContractError, match="outside the dataset"):
        dataset.append(rows(["a"], 1.0), DAY)
    with pytest.raises(ContractError, match="outside the dataset"):
        dataset.write_partition(rows(["a"], 1.0), DAY, "north")
    assert list(outside.iterdir()) == []
