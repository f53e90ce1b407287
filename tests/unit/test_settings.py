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


REDACTED = [  # (URL, what may be shown)
    ("postgresql://ops:hunter2@db:5432/ops", "postgresql://ops:***@db:5432/ops"),
    ("postgresql://ops:p@ss@w@rd@db/ops", "postgresql://ops:***@db/ops"),  # @ in a password
    ("postgresql://ops:pa/ss?x#y@db/ops", "postgresql://ops:***@db/ops"),  # / ? # in one
    ("https://TOKEN123@hooks.example/x", "https://***@hooks.example/x"),
    ("https://h.example/hook?token=t0k&team=noc", "https://h.example/hook?token=***&team=noc"),
    (
        "https://h.example/x?password=a&key=b&secret=c&sig=d&api_key=e#access_token=f",
        "https://h.example/x?password=***&key=***&secret=***&sig=***&api_key=***#access_token=***",
    ),
    (
        "postgresql://db/ops?sslmode=require&sslpassword=x",
        "postgresql://db/ops?sslmode=require&sslpassword=***",
    ),
    (
        "https://hooks.slack.example/services/T0000/B0000/XXXXXXXXXXXXabcd12345678",
        "https://hooks.slack.example/services/T0000/B0000/***",
    ),
    ("http://host/users/@me?to=a@b.example", "http://host/users/@me?to=a@b.example"),
    ("host=db user=ops password=hunter2 dbname=ops", "host=db user=ops password=*** dbname=ops"),
    ("sqlite:////srv/cellpulse/mlflow.db", "sqlite:////srv/cellpulse/mlflow.db"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
]


@pytest.mark.parametrize(("url", "shown"), REDACTED)
def test_redact_url_hides_every_credential_and_keeps_the_server(url, shown):
    from cellpulse.redaction import redact_url

    assert redact_url(url) == shown


def test_secret_urls_show_redacted_and_serialise_without_the_secret(monkeypatch):
    monkeypatch.setenv("CELLPULSE_OPS_STORE_URL", "postgresql://ops:hunter2@db/ops")
    monkeypatch.setenv("CELLPULSE_ALERTS__WEBHOOK_URL", "https://h.example/hook?token=t0k")
    monkeypatch.setenv("CELLPULSE_MLFLOW_TRACKING_URI", "https://ml:pw9@mlflow.example")
    s = load_settings()
    assert s.ops_store_url.get_secret_value() == "postgresql://ops:hunter2@db/ops"
    assert s.alerts.webhook_url.get_secret_value() == "https://h.example/hook?token=t0k"
    assert s.tracking_uri == "https://ml:pw9@mlflow.example"
    shown = " ".join((repr(s), str(s), s.model_dump_json()))
    for secret in ("hunter2", "t0k", "pw9"):
        assert secret not in shown
    assert "postgresql://ops:***@db/ops" in repr(s)


@pytest.mark.parametrize(
    "url", ["file:///etc/hostname", "ftp://h.example/x", "gopher://h/", "http:///no-host", "h/x"]
)
def test_a_webhook_that_is_not_http_is_refused_at_load(monkeypatch, url):
    monkeypatch.setenv("CELLPULSE_ALERTS__WEBHOOK_URL", url)
    with pytest.raises(CellpulseError, match=r"alerts\.webhook_url: .*http:// or https://"):
        load_settings()
