"""Loading an API-format ComfyUI graph and following its links.

An API graph maps node ids to ``{"class_type": …, "inputs": {…}}``; an input that is a
link is written ``[node_id, output_index]``. Graphs written by real servers may hold
``NaN``/``Infinity`` in fields nobody reads (``"is_changed": NaN``): they are parsed,
and a non-finite number is refused only where a value is actually used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from ledger.errors import InvalidInputError

MAX_DEPTH: Final = 256
# Inputs that carry a literal value through primitive / "constant" nodes.
_VALUE_INPUTS: Final = ("value", "int", "float", "string", "text", "seed", "number")
# Classes whose output is computed when the graph runs: the value is not in the file.
_COMPUTED: Final = re.compile(r"math|counter|increment|random|eval|expression|calc|formula|operation", re.I)


def loads(text: str | bytes, what: str) -> Any:
    """JSON with NaN/Infinity allowed (real graphs hold them); nesting bombs refused."""
    try:
        return json.loads(text)
    except RecursionError:
        raise InvalidInputError(f"{what} is nested too deeply") from None
    except ValueError as exc:
        raise InvalidInputError(f"{what} is not valid JSON: {exc}") from None


def load_graph(value: Any) -> dict[str, dict[str, Any]]:
    """Check an API-format graph (a JSON string or an object) and return it."""
    if isinstance(value, str | bytes):
        value = loads(value, "ComfyUI prompt")
    if not isinstance(value, Mapping) or not value:
        raise InvalidInputError("ComfyUI prompt: expected a non-empty object of nodes")
    graph: dict[str, dict[str, Any]] = {}
    for node_id, node in value.items():
        if not isinstance(node, Mapping) or not isinstance(node.get("class_type"), str):
            raise InvalidInputError(
                f"ComfyUI prompt: node {str(node_id)[:40]!r} has no class_type "
                "(is this a UI workflow rather than the API graph?)"
            )
        inputs = node.get("inputs", {})
        if not isinstance(inputs, Mapping):
            raise InvalidInputError(f"ComfyUI prompt: node {node_id}: inputs must be an object")
        graph[str(node_id)] = {"class_type": node["class_type"], "inputs": dict(inputs)}
    return graph


def is_api_graph(value: Any) -> bool:
    """True for an object whose values all look like API-format nodes."""
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(isinstance(n, Mapping) and isinstance(n.get("class_type"), str) for n in value.values())
    )


def is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str | int)
        and not isinstance(value[0], bool)
        and isinstance(value[1], int)
    )


class Graph:
    """Link following over a loaded graph; what could not be read lands in ``notes``."""

    def __init__(self, graph: dict[str, dict[str, Any]]) -> None:
        self.nodes = graph
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def cls(self, node_id: str) -> str:
        return str(self.nodes[node_id]["class_type"])

    def inputs(self, node_id: str) -> dict[str, Any]:
        return self.nodes[node_id]["inputs"]  # type: ignore[no-any-return]

    def node(self, link: Any, *, where: str | None = None) -> str | None:
        """The id of the node a link points at (None for a literal or a dangling link)."""
        if not is_link(link):
            return None
        node_id = str(link[0])
        if node_id in self.nodes:
            return node_id
        if where is not None:
            self.note(f"{where} links to node {node_id[:40]}, which is not in the graph")
        return None

    def value(self, raw: Any, names: tuple[str, ...], where: str = "", depth: int = 0) -> Any:
        """A literal input, following links to primitive-like nodes by input name.

        A link to a node that computes its output at run time (math, counters, random)
        gives None and a note: the value is not in the file, and is not guessed."""
        if not is_link(raw):
            return raw
        found = self.node(raw, where=where or None)
        if found is None or depth > MAX_DEPTH:
            return None
        kind = self.cls(found)
        if _COMPUTED.search(kind):
            self.note(
                f"{where or 'a value'} is computed at run time by node {found} ({kind}); recorded as unknown"
            )
            return None
        inputs = self.inputs(found)
        for name in (*names, *_VALUE_INPUTS):
            if name in inputs:
                return self.value(inputs[name], names, where, depth + 1)
        if where:
            self.note(f"{where} comes from node {found} ({kind}), whose value is not in the file")
        return None

    def upstream(self, start: str) -> list[str]:
        """Every node id upstream of ``start`` (breadth first, nearest first)."""
        seen: set[str] = {start}
        order: list[str] = []
        queue = [start]
        while queue:
            current = queue.pop(0)
            for raw in self.inputs(current).values():
                found = self.node(raw)
                if found is not None and found not in seen:
                    seen.add(found)
                    order.append(found)
                    queue.append(found)
        return order


def json_safe(value: Any, path: str = "", found: list[str] | None = None, depth: int = 0) -> Any:
    """A copy with NaN/Infinity replaced by None (JSON columns cannot hold them); the
    paths replaced are appended to ``found``."""
    if (isinstance(value, float) and value != value) or value in (float("inf"), float("-inf")):
        if found is not None:
            found.append(path or "(root)")
        return None
    if depth > MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {
            k: json_safe(v, f"{path}.{k}" if path else str(k), found, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list):
        return [json_safe(v, f"{path}[{i}]", found, depth + 1) for i, v in enumerate(value)]
    return value
