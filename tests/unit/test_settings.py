from pathlib import Path

import pytest

from cellpulse.errors import CellpulseError
from cellpulse.settings import load_settings


def test_defaults_put_everything_under_an_absolute_home(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.home == tmp_path / ".cellpulse"
    assert s.tracking_uri == f"sqlite:///{tmp_path / '.cellpulse' / 'mlflow.db'}"
    assert s.rop_minutes == 15
    assert s.congestion.prb_util_min_pct == 80


def test_environment_overrides_config_file_and_flags_override_environment(tmp_path, monkeypatch):
    cfg = tmp_path / "cellpulse.yaml"
    cfg.write_text("rop_minutes: 60\ntrain:\n  num_trees: 7\nalerts:\n  consecutive_rops: 5\n")
    monkeypatch.setenv("CELLPULSE_TRAIN__NUM_TREES", "9")
    s = load_settings(cfg, home=tmp_path / "h")
    assert s.rop_minutes == 60  # from the file
    assert s.train.num_trees == 9  # env beats file
    assert s.alerts.consecutive_rops == 5
    assert load_settings(cfg, home=tmp_path / "h", rop_minutes=5).rop_minutes == 5


def test_invalid_setting_is_one_clear_line(tmp_path):
    with pytest.raises(CellpulseError) as err:
        load_settings(None, home=tmp_path, rop_minutes=7)
    assert "rop_minutes" in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_config_file_says_which(tmp_path):
    with pytest.raises(CellpulseError, match="does not exist"):
        load_settings(Path(tmp_path / "nope.yaml"))
