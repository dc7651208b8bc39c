"""Why an upload was refused, in the domain's words; the API maps each kind to its HTTP status."""

from __future__ import annotations

import enum


class RefusalKind(enum.StrEnum):
    too_large = "too_large"  # over a size, page-count or pixel limit
    unsupported = "unsupported"  # not a format markq reads
    invalid = "invalid"  # damaged, empty, unsafe, or not what was promised
