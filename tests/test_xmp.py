"""XMP merge by XML parse (defusedxml + ElementTree): foreign content kept, bombs refused."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

import pytest

from ledger.errors import InvalidInputError
from ledger.workflows.stamp import SEEDLEDGER_NS, Stamp, stamp_in_xmp, xmp_packet

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
FOREIGN = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Other Tool 1.0">'
    f'<rdf:RDF xmlns:rdf="{RDF}">'
    '<rdf:Description rdf:about="" xmlns:acme="urn:acme:photo/" xmlns:dc="http://purl.org/dc/elements/1.1/"'
    ' acme:Lens="50mm &amp; more" dc:format="image/png">'
    "<dc:creator><rdf:Seq><rdf:li>Ada</rdf:li></rdf:Seq></dc:creator>"
    "<acme:Note>keep &lt;me&gt;</acme:Note>"
    "</rdf:Description>"
    "</rdf:RDF></x:xmpmeta>"
    '<?xpacket end="w"?>'
)
BOMB = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i + 1} "{f"&lol{i};" * 10 if i else "&lol;" * 10}">' for i in range(9))
    + f']><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{RDF}">&lol9;</rdf:RDF></x:xmpmeta>'
)
XXE = (
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{RDF}">&e;</rdf:RDF></x:xmpmeta>'
)


def _stamp(record_id: int) -> Stamp:
    return Stamp(
        record_id=record_id,
        idempotency_key=f"k{record_id}",
        stamped_at="2026-01-01T00:00:00Z",
        checkpoint=None,
        record={"prompt": 'a "cat" <b>&</b>'},
    )


def test_merge_keeps_foreign_namespaces_prefixes_and_content() -> None:
    packet = xmp_packet(_stamp(7), FOREIGN)
    root = ET.fromstring(packet)
    first, ours = root.iter(f"{{{RDF}}}Description")
    assert first.get("{urn:acme:photo/}Lens") == "50mm & more"
    assert first.get("{http://purl.org/dc/elements/1.1/}format") == "image/png"
    assert first.findtext("{urn:acme:photo/}Note") == "keep <me>"
    assert [li.text for li in first.iter(f"{{{RDF}}}li")] == ["Ada"]
    assert root.get("{adobe:ns:meta/}xmptk") == "Other Tool 1.0"
    assert ours.get(f"{{{SEEDLEDGER_NS}}}RecordId") == "7"
    # prefixes as the other tool wrote them, not ns0/ns1
    assert 'acme:Lens="50mm &amp; more"' in packet and "<dc:creator>" in packet and "ns0:" not in packet
    assert packet.startswith("<?xpacket begin=") and packet.endswith('<?xpacket end="w"?>')
    assert stamp_in_xmp(packet) == _stamp(7)


def test_restamping_replaces_only_our_description() -> None:
    twice = xmp_packet(_stamp(8), xmp_packet(_stamp(7), FOREIGN))
    root = ET.fromstring(twice)
    assert len(list(root.iter(f"{{{RDF}}}Description"))) == 2
    assert twice.count("seedledger:RecordId") == 1 and twice.count("DigitalSourceType") == 1
    assert stamp_in_xmp(twice) == _stamp(8)


@pytest.mark.parametrize("hostile", [BOMB, XXE], ids=["billion-laughs", "external-entity"])
def test_entity_bombs_and_external_entities_are_refused(hostile: str) -> None:
    with pytest.raises(InvalidInputError, match="declares a DTD or entities; refusing"):
        xmp_packet(_stamp(1), hostile)
    assert stamp_in_xmp(hostile) is None  # reading one finds no stamp, and expands nothing


def test_not_xml_or_not_rdf_is_refused_with_one_line() -> None:
    with pytest.raises(InvalidInputError, match="not well-formed XML"):
        xmp_packet(_stamp(1), "<x:xmpmeta><rdf:RDF>")
    with pytest.raises(InvalidInputError, match="not RDF/XML; refusing to overwrite"):
        xmp_packet(_stamp(1), '<x:xmpmeta xmlns:x="adobe:ns:meta/"/>')


def test_element_form_stamp_is_read() -> None:
    """Tools that rewrite XMP (exiftool) may turn attributes into elements."""
    element = f'<s:Stamp xmlns:s="{SEEDLEDGER_NS}">{escape(_stamp(3).to_json())}</s:Stamp>'
    packet = f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{RDF}"><rdf:Description>'
    assert stamp_in_xmp(packet + element + "</rdf:Description></rdf:RDF></x:xmpmeta>") == _stamp(3)
