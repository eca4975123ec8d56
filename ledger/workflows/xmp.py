"""XMP packets as XML: parsed with defusedxml, changed as a tree, written by ElementTree.

An image's existing packet comes from outside, so it is parsed with ``forbid_dtd``: a
DOCTYPE (the carrier of entity bombs and external entities) is refused outright, before
any entity could expand. Everything in the packet that is not seedledger's is kept:
other descriptions, foreign namespaces with their prefixes, element-form properties.
"""

from __future__ import annotations

import io
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Final

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from ledger.errors import InvalidInputError

__all__ = ["RDF_NS", "merge_description", "parse_packet", "property_value"]

RDF_NS: Final = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
X_NS: Final = "adobe:ns:meta/"
_DESCRIPTION: Final = f"{{{RDF_NS}}}Description"
_ABOUT: Final = f"{{{RDF_NS}}}about"
_HEADER: Final = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
_TRAILER: Final = '\n<?xpacket end="w"?>'
# ElementTree keeps namespace prefixes in one process-wide map: register and serialise
# under one lock so that two stamps in threads cannot swap each other's prefixes.
_PREFIXES = threading.Lock()
_RESERVED: Final = re.compile(r"ns\d+$")  # ElementTree's own generated prefixes


def parse_packet(text: str) -> tuple[ET.Element, dict[str, str]]:
    """The packet's root element and its namespace prefixes (prefix -> URI)."""
    prefixes: dict[str, str] = {}
    try:
        events = SafeET.iterparse(io.StringIO(text), events=("start-ns",), forbid_dtd=True)
        for _event, (prefix, uri) in events:
            prefixes.setdefault(prefix, uri)
        root: ET.Element = events.root
    except DefusedXmlException:
        raise InvalidInputError("the image's XMP declares a DTD or entities; refusing to read it") from None
    except ET.ParseError as exc:
        raise InvalidInputError(f"the image's existing XMP is not well-formed XML ({exc})") from None
    return root, prefixes


def _rdf(root: ET.Element) -> ET.Element:
    found = root if root.tag == f"{{{RDF_NS}}}RDF" else root.find(f".//{{{RDF_NS}}}RDF")
    if found is None:
        raise InvalidInputError("the image's existing XMP is not RDF/XML; refusing to overwrite it")
    return found


def _drop_namespace(rdf: ET.Element, namespace: str, also: frozenset[str]) -> None:
    """Remove every property in ``namespace`` (and, in a description that had such a
    property, the ``also`` properties); a description left empty goes too."""
    mark = f"{{{namespace}}}"
    for description in list(rdf.iter(_DESCRIPTION)):
        ours = [k for k in description.attrib if k.startswith(mark)]
        ours += [c.tag for c in description if c.tag.startswith(mark)]
        if not ours:
            continue
        for key in [k for k in description.attrib if k.startswith(mark) or k in also]:
            del description.attrib[key]
        for child in [c for c in description if c.tag.startswith(mark) or c.tag in also]:
            description.remove(child)
        if not len(description) and set(description.attrib) <= {_ABOUT}:
            rdf.remove(description)


def merge_description(
    existing: str | None,
    properties: Mapping[str, str],
    namespaces: Mapping[str, str],
    *,
    replace_namespace: str,
) -> str:
    """A full XMP packet: ``existing`` (or a new packet) with every property of
    ``replace_namespace`` removed and one new ``rdf:Description`` holding
    ``properties`` (``{uri}name`` keys) appended. ``namespaces``: prefix -> URI."""
    prefixes = {"x": X_NS, "rdf": RDF_NS, **namespaces}
    if existing and existing.strip():
        root, found = parse_packet(existing)
        prefixes = {**found, **prefixes}
        rdf = _rdf(root)
        replaced = frozenset(k for k in properties if not k.startswith(f"{{{replace_namespace}}}"))
        _drop_namespace(rdf, replace_namespace, replaced)
    else:
        root = ET.Element(f"{{{X_NS}}}xmpmeta")
        rdf = ET.SubElement(root, f"{{{RDF_NS}}}RDF")
    ET.SubElement(rdf, _DESCRIPTION, {_ABOUT: "", **properties})
    with _PREFIXES:
        for prefix, uri in prefixes.items():
            if prefix and not _RESERVED.match(prefix):
                ET.register_namespace(prefix, uri)
        body = ET.tostring(root, encoding="unicode")
    return _HEADER + body + _TRAILER


def property_value(xmp: str, name: str) -> str | None:
    """The first ``{uri}name`` property (attribute or element form), or None; a packet
    that does not parse (or declares a DTD) has none."""
    try:
        root, _ = parse_packet(xmp)
    except InvalidInputError:
        return None
    for description in root.iter(_DESCRIPTION):
        if name in description.attrib:
            return description.attrib[name]
        child = description.find(name)
        if child is not None and child.text is not None:
            return child.text
    return None
