"""Reference docs generated from the code, so they cannot drift from it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from cellpulse.settings import Settings


def _rows(model: type[BaseModel], prefix: str, env: str) -> list[tuple[str, str, str, str]]:
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += _rows(annotation, f"{prefix}{name}.", f"{env}{name.upper()}__")
            continue
        default: Any = field.get_default(call_default_factory=True)
        rows.append(
            (f"{prefix}{name}", f"`{env}{name.upper()}`", f"`{default}`", field.description or "")
        )
    return rows


def settings_markdown() -> str:
    lines = [
        "# Settings",
        "",
        "Highest priority first: command-line flags, `CELLPULSE_*` environment variables "
        "(nested with `__`), the YAML file given by `--config` or `CELLPULSE_CONFIG` (keys "
        "as in the first column, nested as YAML mappings).",
        "",
        "| setting | environment variable | default | meaning |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{a}` | {b} | {c} | {d} |" for a, b, c, d in _rows(Settings, "", "CELLPULSE_")]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings_markdown(), end="")
