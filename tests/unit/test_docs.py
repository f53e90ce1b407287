from pathlib import Path

from cellpulse.docs import features_markdown, settings_markdown
from cellpulse.features.spec import default_spec

ROOT = Path(__file__).resolve().parents[2]


def test_settings_reference_is_up_to_date():
    """docs/settings.md is generated: `python -m cellpulse.docs > docs/settings.md`."""
    assert (ROOT / "docs" / "settings.md").read_text() == settings_markdown()
    assert "`CELLPULSE_TRAIN__NUM_TREES`" in settings_markdown()


def test_feature_reference_is_up_to_date_and_covers_every_column():
    """docs/features.md is generated: `python -m cellpulse.docs features > docs/features.md`."""
    text = features_markdown()
    assert (ROOT / "docs" / "features.md").read_text() == text
    for column in default_spec(15).columns():
        assert f"| `{column}` |" in text
