"""Compiled scoring: LightGBM boosters turned into native code (treelite -> C -> gcc, via
tl2cgen), same predictions, faster than LightGBM's own `predict`.

A booster is compiled the first time it scores and the shared library is kept in
`<home>/compiled/<hash of the model text>.so`, so each model version compiles once per
installation. Where compiling is impossible (no C compiler) scoring says so once and
falls back to LightGBM, whose numbers are the same.

An engine's `predict` is a `models.boosting.Predict`: scoring passes it down explicitly
(see `models.scoring.predictor`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import sys
import tempfile
import threading
import uuid
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightgbm as lgb
import numpy as np

log = logging.getLogger(__name__)


class CompiledModels:
    """Compiled twins of boosters, each compiled once and loaded once per process."""

    def __init__(self, cache_dir: Path, threads: int = 2) -> None:
        self.cache_dir = cache_dir
        self.threads = threads
        self._loaded: dict[int, tuple[lgb.Booster, object]] = {}
        self._lock = threading.Lock()
        self._matrices: dict[int, object] = {}  # id of a live input matrix -> its DMatrix
        self.failed: str | None = None  # why compiling is impossible here, once known

    def predict(self, booster: lgb.Booster, x: np.ndarray) -> np.ndarray:
        """`booster.predict(x)` by its compiled twin (LightGBM's, where compiling failed)."""
        if self.failed is None:
            predictor = self._predictor(booster)
            if predictor is not None:
                return np.asarray(predictor.predict(self._dmatrix(x))).reshape(x.shape[0])  # type: ignore[attr-defined]
        return np.asarray(booster.predict(x))

    def _dmatrix(self, x: np.ndarray) -> object:
        """tl2cgen's copy of `x`, made once while `x` lives: the anomaly model's regressors
        all score the same matrix, and the copy costs as much as a booster's predict."""
        import tl2cgen

        key = id(x)
        matrix = self._matrices.get(key)
        if matrix is None:
            matrix = tl2cgen.DMatrix(np.ascontiguousarray(x, dtype=np.float64))
            self._matrices[key] = matrix
            weakref.finalize(x, self._matrices.pop, key, None)
        return matrix

    def _predictor(self, booster: lgb.Booster) -> object | None:
        with self._lock:
            known = self._loaded.get(id(booster))
            if known is not None and known[0] is booster:
                return known[1]
            try:
                predictor = self._load(booster)
            except Exception as exc:  # no compiler, no tl2cgen, a failing build: say why once
                self.failed = f"{type(exc).__name__}: {exc}".splitlines()[0]
                log.warning("compiled scoring unavailable (%s); using LightGBM", self.failed)
                return None
            self._loaded[id(booster)] = (booster, predictor)
            return predictor

    def _load(self, booster: lgb.Booster) -> object:
        # tl2cgen narrates on stdout and warns that the model came from a newer treelite
        # (it bundles an older reader that handles LightGBM models fine): keep that out of
        # the user's terminal, at debug level in the log.
        chatter = io.StringIO()
        with (
            contextlib.redirect_stdout(chatter),
            _native_stderr_to(chatter),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            predictor = self._compile_and_load(booster)
        if chatter.getvalue().strip():
            log.debug("tl2cgen: %s", chatter.getvalue().strip())
        return predictor

    def _compile_and_load(self, booster: lgb.Booster) -> object:
        import tl2cgen
        import treelite

        text = booster.model_to_string()
        library = self.cache_dir / f"{hashlib.sha256(text.encode()).hexdigest()[:24]}.so"
        if not library.exists():
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            # Built aside and renamed, so a concurrent or interrupted build never leaves a
            # half-written library where another process would load it.
            partial = library.with_name(f".{library.stem}.{uuid.uuid4().hex}.so")
            try:
                tl2cgen.export_lib(
                    treelite.frontend.from_lightgbm(booster),
                    toolchain=os.environ.get("CC", "gcc"),
                    libpath=str(partial),
                    params={"parallel_comp": max(1, self.threads)},
                    nthread=self.threads,
                    verbose=False,
                )
                os.replace(partial, library)
            finally:
                partial.unlink(missing_ok=True)
        return tl2cgen.Predictor(str(library), nthread=self.threads, verbose=False)


@contextmanager
def _native_stderr_to(sink: io.StringIO) -> Iterator[None]:
    """Capture what native code writes to file descriptor 2 (treelite logs there directly)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            sink.write(capture.read().decode(errors="replace"))
