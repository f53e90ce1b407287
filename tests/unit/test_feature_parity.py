"""Every feature of the builder equals the straightforward pandas reference."""

from __future__ import annotations

import numpy as np
import polars as pl

from bench.pandas_reference import build_features_pandas
from cellpulse.features.builder import build_features
from cellpulse.features.spec import default_spec

# Features are stored as float32 (relative precision 6e-8); pandas' rolling variance (running
# sums of squares) leaves ~1e-6 where the exact answer is 0.
RTOL, ATOL = 3e-7, 1e-5


def test_every_feature_matches_the_pandas_reference(tiny_network):
    rop_minutes = 15
    kpis = tiny_network[2].filter(pl.int_range(pl.len()).over("cell_id") % 7 != 3)  # holes too
    spec = default_spec(rop_minutes)
    ours = build_features(kpis, spec, rop_minutes=rop_minutes, min_denominator=10)
    ref = build_features_pandas(kpis, spec, rop_minutes=rop_minutes, min_denominator=10)
    assert ours.select("cell_id", "ts").equals(ref.select("cell_id", "ts"))
    for column in spec.columns():
        a = ours[column].cast(pl.Float64).to_numpy()
        b = ref[column].cast(pl.Float64).to_numpy()
        assert np.array_equal(np.isnan(a), np.isnan(b)), f"{column}: nulls differ"
        ok = ~np.isnan(a)
        assert np.allclose(a[ok], b[ok], rtol=RTOL, atol=ATOL), column
