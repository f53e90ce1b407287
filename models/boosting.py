"""What every cellpulse LightGBM model shares: its parameters and how a frame becomes the
matrix LightGBM reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

import lightgbm as lgb
import numpy as np
import polars as pl

from cellpulse.settings import TrainSettings


@dataclass(frozen=True)
class BoosterParams:
    """The LightGBM settings every cellpulse model family shares (from `TrainSettings`)."""

    num_trees: int = 200
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 50
    n_jobs: int = 1
    seed: int = 42
    early_stopping_rounds: int = 0  # 0: always num_trees (see TrainSettings)

    @classmethod
    def from_settings(cls, train: TrainSettings) -> Self:
        return cls(
            num_trees=train.num_trees,
            learning_rate=train.learning_rate,
            num_leaves=train.num_leaves,
            min_data_in_leaf=train.min_data_in_leaf,
            n_jobs=train.n_jobs,
            seed=train.seed,
            early_stopping_rounds=train.early_stopping_rounds,
        )

    def lgb_params(self, objective: str, **extra: Any) -> dict[str, Any]:
        return {
            "objective": objective,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "num_threads": self.n_jobs,
            "seed": self.seed,
            # Same data and seed, same model: row-wise histograms and deterministic mode.
            "deterministic": True,
            "force_row_wise": True,
            # 63 bins and bagging: a fraction of the time of the defaults, at no loss we
            # could measure on the scoreboard.
            "max_bin": 63,
            "bagging_fraction": 0.7,
            "bagging_freq": 1,
            "feature_fraction": 0.8,
            "verbosity": -1,
            **extra,
        }


def matrix(df: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """The named columns as a row-major float64 matrix (nulls become NaN, which LightGBM
    handles): the layout LightGBM and compiled models read without another copy."""
    # Float32 features are widened by to_numpy itself (exactly, and faster than a cast to
    # Float64 first: bench/RESULTS.md); only other types (counts, flags) are cast.
    schema = df.schema
    x = df.select(
        pl.col(c) if schema[c] in (pl.Float32, pl.Float64) else pl.col(c).cast(pl.Float64)
        for c in columns
    ).to_numpy(order="c")
    return x if x.dtype == np.float64 else x.astype(np.float64)


# Types every value of which a float32 holds exactly: LightGBM bins a float32 matrix of them
# exactly as the float64 one (it widens each value to a double as it reads it), at half the
# memory, and reads float32 numpy without a copy of its own.
_EXACT_IN_FLOAT32 = (pl.Float32, pl.Boolean, pl.Int8, pl.Int16, pl.UInt8, pl.UInt16)
_FLOAT32_INTS = 1 << 24  # integers up to this magnitude are exact in a float32


def training_matrix(df: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """The named columns as a row-major matrix to train on: float32 when a float32 holds
    every value exactly (the stored features are Float32), which trains the same model as
    the float64 `matrix` at half its memory; float64 (`matrix`) otherwise."""
    schema = df.schema
    for c in columns:
        kind = schema[c]
        if kind in _EXACT_IN_FLOAT32:
            continue
        if not kind.is_integer():
            return matrix(df, columns)
        largest = df.get_column(c).abs().max() if df.height else 0
        if largest is not None and int(largest) > _FLOAT32_INTS:  # type: ignore[arg-type]
            return matrix(df, columns)
    return df.select(pl.col(c).cast(pl.Float32) for c in columns).to_numpy(order="c")


def training_frame(df: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """The named columns as a frame LightGBM bins column by column (through Arrow), holding
    exactly the values of `matrix` (float columns as they are, others cast to Float64): it
    trains the same model as `matrix` without a dense copy, which for a wide set of inputs
    (the fault classifier's ~150 columns) is gigabytes at a few million rows."""
    schema = df.schema
    return df.select(
        pl.col(c) if schema[c] in (pl.Float32, pl.Float64) else pl.col(c).cast(pl.Float64)
        for c in columns
    )


def rows_of(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The rows of `x` where `mask` holds: `x` itself when it holds everywhere (no copy of a
    training matrix for a target with a value in every row)."""
    return x if mask.all() else x[mask]


def top_gain(booster: lgb.Booster, names: list[str], top: int) -> list[tuple[str, float]]:
    """The `top` features by total split gain, largest first (the feature importance plot)."""
    gain = booster.feature_importance("gain")
    order = np.argsort(-gain)[:top]
    return [(names[i], float(gain[i])) for i in order]


# How a booster scores a matrix: LightGBM's own predict, or its compiled twin's
# (`models.compiled.CompiledModels.predict`). Scoring takes one explicitly; training and
# evaluation use LightGBM's.
Predict = Callable[[lgb.Booster, np.ndarray], np.ndarray]


def lightgbm_predict(booster: lgb.Booster, x: np.ndarray) -> np.ndarray:
    """LightGBM's own `predict`, as a `Predict`."""
    return np.asarray(booster.predict(x))


# What a booster trains on: a matrix (`training_matrix`) or a frame (`training_frame`).
Inputs = np.ndarray | pl.DataFrame

# How a booster is trained: in this process, or across a Dask cluster.
Trainer = Callable[[dict[str, Any], Inputs, np.ndarray, int, list[str]], lgb.Booster]


def train_local(
    params: dict[str, Any], x: Inputs, y: np.ndarray, rounds: int, names: list[str]
) -> lgb.Booster:
    """A booster trained in this process (the default `Trainer`)."""
    data = lgb.Dataset(x, y, feature_name=names, free_raw_data=True)
    return lgb.train(params, data, num_boost_round=rounds)


def best_rounds(
    params: dict[str, Any],
    fit: tuple[np.ndarray, np.ndarray],
    check: tuple[np.ndarray, np.ndarray],
    rounds: int,
    patience: int,
    names: list[str],
) -> int:
    """How many boosting rounds (at most `rounds`) fit `fit` best as judged on `check` (rows
    from a later period): training stops once `patience` rounds in a row did not improve
    the error on `check`, and the best count is returned."""
    data = lgb.Dataset(fit[0], fit[1], feature_name=names, free_raw_data=True)
    held = lgb.Dataset(check[0], check[1], reference=data)
    probe = lgb.train(
        params,
        data,
        num_boost_round=rounds,
        valid_sets=[held],
        callbacks=[lgb.early_stopping(patience, verbose=False)],
    )
    return max(1, probe.best_iteration or rounds)


@dataclass(frozen=True)
class DaskTrainer:
    """Training sets of at least `min_rows` rows train with LightGBM's Dask interface on
    `client`'s cluster (data-parallel: each worker holds a share of the rows); smaller ones
    train here, where they are faster."""

    client: Any  # distributed.Client
    min_rows: int

    def __call__(
        self, params: dict[str, Any], x: Inputs, y: np.ndarray, rounds: int, names: list[str]
    ) -> lgb.Booster:
        if len(y) < self.min_rows:
            return train_local(params, x, y, rounds, names)
        import dask.array as da

        if isinstance(x, pl.DataFrame):  # the cluster splits a matrix into row blocks
            x = matrix(x, names)

        workers = max(len(self.client.scheduler_info().get("workers", {})), 1)
        chunk = -(-len(y) // workers)
        xs = da.from_array(x, chunks=(chunk, x.shape[1]))
        ys = da.from_array(y, chunks=(chunk,))
        estimator = (
            lgb.DaskLGBMClassifier if params.get("objective") == "binary" else lgb.DaskLGBMRegressor
        )
        # Threads per worker are the cluster's business (threads_per_worker), not the model's.
        on_cluster = {k: v for k, v in params.items() if k != "num_threads"}
        fitted = estimator(client=self.client, n_estimators=rounds, **on_cluster).fit(
            xs, ys, feature_name=names
        )
        booster: lgb.Booster = fitted.to_local().booster_
        return booster
