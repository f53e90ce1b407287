"""The lake: hive-partitioned parquet datasets (date=, region=) with atomic writes.

A write goes to a hidden temporary file beside its target, is fsynced, then renamed over it:
a crash leaves either the old partition or the new one, never half of one.

Every dataset is keyed by (cell_id, ts). A partition is one compacted `part.parquet` (unique
keys, sorted) plus, for datasets fed by deliveries (lake/kpi), append-only deltas: folders
`delta-<seq>/` of fragment files (Arrow IPC, or parquet copied from a landing file), in
delivery order. A reader applies the deltas over the compacted part, the last delivery of a key
winning; `Dataset.compact` folds them in, and `Dataset.drop_day` removes a whole day (renamed out
of sight, then deleted). Appending a delivery therefore costs in proportion
to the delivery, not to the day it lands in, and its fragments can be written while the rest
of the delivery is still being read: a delta is prepared in a hidden folder and published by
renaming the folder, all or nothing. `scan` reads lake files of either format.

Modules: `files` (atomic, durable writes), `partitions` (folder and file names), `tables`
(helpers over keyed tables), `dataset` (`Dataset`) and `deltas` (`DeltaStream`).
"""

from cellpulse.lake.dataset import Dataset
from cellpulse.lake.deltas import PENDING_GLOB, DeltaStream
from cellpulse.lake.files import (
    atomic_write_bytes,
    atomic_write_parquet,
    file_sha256,
    read_metadata,
)
from cellpulse.lake.partitions import (
    DELTA_PREFIX,
    DROPPED_PREFIX,
    FRAGMENT_SUFFIX,
    FRAGMENT_SUFFIXES,
    NAME_MAX,
    PART_FILE,
    delta_seq,
)
from cellpulse.lake.tables import (
    KEYS,
    MAX_SEGMENTS,
    by_keys,
    in_key_order,
    key_ordered_segments,
    latest_rows,
    scan,
    split_regions,
)

__all__ = [
    "DELTA_PREFIX",
    "DROPPED_PREFIX",
    "FRAGMENT_SUFFIX",
    "FRAGMENT_SUFFIXES",
    "KEYS",
    "MAX_SEGMENTS",
    "NAME_MAX",
    "PART_FILE",
    "PENDING_GLOB",
    "Dataset",
    "DeltaStream",
    "atomic_write_bytes",
    "atomic_write_parquet",
    "by_keys",
    "delta_seq",
    "file_sha256",
    "in_key_order",
    "key_ordered_segments",
    "latest_rows",
    "read_metadata",
    "scan",
    "split_regions",
]
