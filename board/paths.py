from __future__ import annotations

from pathlib import Path

# In a checkout, templates/, static/ and migrations/ sit beside the package; a wheel carries
# them under board/_data/ (see pyproject's force-include).
_PACKAGE = Path(__file__).resolve().parent
_ROOT = _PACKAGE.parent if (_PACKAGE.parent / "templates").is_dir() else _PACKAGE / "_data"

TEMPLATES = _ROOT / "templates"
STATIC = _ROOT / "static"
VENDOR = STATIC / "vendor"
MIGRATIONS = _ROOT / "migrations"
LOCALES = _PACKAGE / "locales"

VENDOR_FILES = ("htmx.min.js", "hx-ws.min.js", "hx-upsert.min.js", "Sortable.min.js")


def missing_vendor_files() -> list[str]:
    return [name for name in VENDOR_FILES if not (VENDOR / name).is_file()]
