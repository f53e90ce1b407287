from pathlib import Path

from cellpulse.docs import settings_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_settings_reference_is_up_to_date():
    """docs/settings.md is generated: `python -m cellpulse.docs > docs/settings.md`."""
    assert (ROOT / "docs" / "settings.md").read_text() == settings_markdown()
    assert "`CELLPULSE_TRAIN__NUM_TREES`" in settings_markdown()
