"""The web app's Chinese: extract the English messages from api/, merge them into the .po and
compile the .mo that Flask-Babel reads. `--check` changes nothing and fails when a message has no
translation or the .mo is not compiled from the .po (the tests run it).

    python scripts/translations.py            # after changing a page's text: then translate the new msgstr
    python scripts/translations.py --check
"""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "api" / "translations" / "zh" / "LC_MESSAGES"
METHODS = [("**.py", "python"), ("templates/**.html", "jinja2")]


def extracted() -> list[str]:
    found = extract_from_dir(ROOT / "api", METHODS, keywords={"_": None, "gettext": None})
    return sorted({message for _file, _line, message, _comments, _context in found if isinstance(message, str)})


def merged(messages: list[str]) -> Catalog:
    old = read_po((FOLDER / "messages.po").open("rb"), locale="zh") if (FOLDER / "messages.po").exists() else None
    catalog = Catalog(locale="zh", project="markq", fuzzy=False)
    for message in messages:
        known = old.get(message) if old is not None else None
        catalog.add(message, known.string if known is not None else "")
    return catalog


def compiled(catalog: Catalog) -> bytes:
    out = io.BytesIO()
    write_mo(out, catalog)
    return out.getvalue()


def lone_percent(text: str) -> bool:
    """Jinja's gettext formats every message with %: a % that is not %% or %(name)s breaks the page."""
    return re.search(r"%(?!%|\(\w+\)s)", text.replace("%%", "")) is not None


def main() -> int:
    catalog = merged(extracted())
    untranslated = [m.id for m in catalog if m.id and not m.string]
    if "--check" in sys.argv:
        problems = [f"no Chinese for {message!r}" for message in untranslated]
        problems += [
            f"a lone % in {m.string!r} (write %% for a percent sign)"
            for m in catalog
            if m.id and lone_percent(m.string)
        ]
        on_disk = read_mo((FOLDER / "messages.mo").open("rb"))
        if {m.id: m.string for m in on_disk if m.id} != {m.id: m.string for m in catalog if m.id}:
            problems.append("messages.mo is not compiled from the current messages: run python scripts/translations.py")
        print("\n".join(problems) or f"{len(catalog) - 1} messages, all translated and compiled")
        return 1 if problems else 0
    FOLDER.mkdir(parents=True, exist_ok=True)
    with (FOLDER / "messages.po").open("wb") as po:
        write_po(po, catalog, width=0, omit_header=False, no_location=True, sort_output=True)
    (FOLDER / "messages.mo").write_bytes(compiled(catalog))
    print(f"{len(catalog) - 1} messages, {len(untranslated)} without Chinese")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
