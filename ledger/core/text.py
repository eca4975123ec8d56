"""Outside text made safe to show: no terminal control sequences."""

from __future__ import annotations

import re

# C0/C1 control characters (terminal escapes, BEL) except tab and newline.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def strip_controls(text: str) -> str:
    """Replace control characters with U+FFFD, so printing or `cat`-ing text taken from
    prompts or files never runs a terminal escape sequence."""
    return _CONTROL.sub("\ufffd", text)
