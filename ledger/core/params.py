"""How request parameters in no backend's protocol name the record's columns.

``record_generation`` maps these names (a diffusers pipeline's own arguments, or
Runware's) to record columns; the auditor maps the columns back when it rebuilds a
replay request for another backend (``ledger.backends.translate``).
"""

from __future__ import annotations

from typing import Final

#: column -> the parameter names that fill it, first match wins.
PARAM_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "prompt": ("prompt", "positivePrompt"),
    "negative_prompt": ("negative_prompt", "negativePrompt"),
    "width": ("width",),
    "height": ("height",),
    "steps": ("steps", "num_inference_steps"),
    "cfg_scale": ("cfg_scale", "CFGScale", "guidance_scale"),
}
