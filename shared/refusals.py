"""Why an upload was refused, in the domain's words; the API maps each kind to its HTTP status."""

from __future__ import annotations

import enum
import unicodedata


class RefusalKind(enum.StrEnum):
    too_large = "too_large"  # over a size, page-count or pixel limit
    unsupported = "unsupported"  # not a format markq reads
    invalid = "invalid"  # damaged, empty, unsafe, or not what was promised


def has_control_characters(text: str) -> bool:
    """NUL, line breaks, tabs and the other control characters: never part of a name, ref or label
    (and a NUL cannot be stored in PostgreSQL text at all)."""
    return any(unicodedata.category(ch) == "Cc" for ch in text)
