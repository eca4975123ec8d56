"""ComfyUI graphs: what made each saved image.

``graph`` loads API graphs and follows links; ``passes`` reads one sampler pass
(KSampler family, custom samplers, detailers); ``outputs`` walks from each image-saving
node back to its sampler chain; ``record`` maps an output to a record; ``ui`` turns a
UI-only workflow into an API graph. Everything here is pure and raises only
:class:`InvalidInputError` (or :class:`InvalidSeedError` for an out-of-range seed).
Decisions are documented in docs/workflows.md.
"""

from ledger.core.comfy.graph import Graph, is_api_graph, json_safe, load_graph, loads
from ledger.core.comfy.outputs import OUTPUT_NODES, ComfyOutput, match_output, outputs_of
from ledger.core.comfy.passes import ComfySampler
from ledger.core.comfy.record import record_for_output
from ledger.core.comfy.ui import UiGraph, is_ui_workflow, workflow_to_graph

__all__ = [
    "OUTPUT_NODES",
    "ComfyOutput",
    "ComfySampler",
    "Graph",
    "UiGraph",
    "is_api_graph",
    "is_ui_workflow",
    "json_safe",
    "load_graph",
    "loads",
    "match_output",
    "outputs_of",
    "record_for_output",
    "workflow_to_graph",
]
