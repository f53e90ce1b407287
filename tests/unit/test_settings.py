import types
import typing
from datetime import date
from pathlib import Path

import pytest
from annotated_types import Le
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from cellpulse.errors import CellpulseError
from cellpulse.settings import Settings, load_settings


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


# Every setting from its environment variable, as docs/settings.md names it. The cases are
# generated from the settings model, so a new setting is covered without touching this test.
# A value here is what an operator types in the shell; the expectation is what it loads as.
ENV_VALUES: dict[str, tuple[str, object]] = {  # fields whose type alone gives no good value
    "home": ("/srv/cellpulse-env", Path("/srv/cellpulse-env")),
    "timezone": ("Europe/Paris", "Europe/Paris"),
    "holidays": ("2026-05-01,2026-12-25", [date(2026, 5, 1), date(2026, 12, 25)]),
    "regions": ("north,east", ["north", "east"]),
    "dask_address": ("tcp://127.0.0.1:8786", "tcp://127.0.0.1:8786"),
    "ops_store_url": ("postgresql://ops:pw@127.0.0.1/ops", "postgresql://ops:pw@127.0.0.1/ops"),
    "mlflow_tracking_uri": ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    "alerts.webhook_url": ("https://127.0.0.1/hook", "https://127.0.0.1/hook"),
    "api.host": ("0.0.0.0", "0.0.0.0"),
    "api.token": ("s3cret-token", "s3cret-token"),
    "api.public_url": ("http://ops.example:8750", "http://ops.example:8750"),
    "schedules.features_cron": ("30 4 * * *", "30 4 * * *"),
    "schedules.train_cron": ("0 5 * * 1", "0 5 * * 1"),
    "schedules.monitor_cron": ("15 6 * * *", "15 6 * * *"),
    "schedules.timezone": ("Europe/Berlin", "Europe/Berlin"),
    "housekeeping.cron": ("0 6 * * *", "0 6 * * *"),
}


def _documented_env_names() -> dict[str, str]:
    """setting -> environment variable, read from the table in docs/settings.md."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "settings.md").read_text()
    names = {}
    for line in text.splitlines():
        cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
        if len(cells) >= 2 and cells[1].startswith("CELLPULSE_"):
            names[cells[0]] = cells[1]
    return names


def _non_default(field: FieldInfo) -> tuple[str, object]:
    """A valid value other than the default, as env text and as loaded, from the type."""
    default = field.get_default(call_default_factory=True)
    annotation = field.annotation
    if typing.get_origin(annotation) is typing.Literal:
        value = next(v for v in typing.get_args(annotation) if v != default)
        return str(value), value
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if annotation is bool:
        return str(not default).lower(), not default
    hi = next((m.le for m in field.metadata if isinstance(m, Le)), None)
    if annotation is int:
        value = (default or 0) + 1
        return str(value), value if hi is None or value <= hi else default - 1
    if annotation is float:
        step = (default or 0.0) + 0.25
        value = step if hi is None or step <= hi else default / 2
        return str(value), value
    raise AssertionError(f"no test value for {annotation}: add the setting to ENV_VALUES")


def _env_cases() -> list[tuple[str, str, str, object]]:
    """(setting, documented variable, text to set, value it must load as) for every field."""
    documented = _documented_env_names()
    cases = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            key = f"{prefix}{name}"
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                walk(field.annotation, f"{key}.")
                continue
            text, expected = ENV_VALUES[key] if key in ENV_VALUES else _non_default(field)
            assert expected != field.get_default(call_default_factory=True), key
            cases.append((key, documented.get(key, f"<{key} not documented>"), text, expected))

    walk(Settings, "")
    return cases


@pytest.mark.parametrize(("setting", "variable", "text", "expected"), _env_cases())
def test_every_setting_loads_from_its_documented_environment_variable(
    setting, variable, text, expected, monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)
    assert variable.startswith("CELLPULSE_"), variable
    monkeypatch.setenv(variable, text)
    value: object = load_settings()
    for part in setting.split("."):
        value = getattr(value, part)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    assert value == expected


def test_list_settings_also_take_a_json_list_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CELLPULSE_REGIONS", '["north", "south"]')
    monkeypatch.setenv("CELLPULSE_HOLIDAYS", "")
    s = load_settings()
    assert s.regions == ["north", "south"]
    assert s.holidays == []
