"""Write the API's OpenAPI document to ``openapi.json`` at the repository root (or check it with ``--check``).

    .venv/bin/python scripts/export_openapi.py           # after changing a route, a model or an error code
    .venv/bin/python scripts/export_openapi.py --check   # exit 1 if the committed file is out of date

The document is generated from the routes in ``functions/handlers/api.py`` (Powertools' OpenAPI support); it is
what ``GET /openapi.json`` serves. ``tests/unit/test_openapi.py`` fails when the committed file drifts.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "openapi.json"


def document() -> str:
    sys.path.insert(0, str(ROOT))
    from functions.handlers.api import openapi_json

    return openapi_json() + "\n"


def main(argv: list[str]) -> int:
    text = document()
    if "--check" in argv:
        if not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT.name} is out of date: run python scripts/export_openapi.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
