"""RFC 6962 / 9162 Merkle tree: the vectors in reference/merkle.md, every proof for every
tree size up to 64 against a naive implementation written here from the RFC text, and
the negative-case recipe of transparency-dev/merkle's proofgen."""

from __future__ import annotations

import hashlib
import itertools

import pytest

from ledger.errors import IntegrityError
from ledger.integrity import merkle
from ledger.integrity.merkle import CompactRange, ProofError

# -- naive RFC 6962 §2.1, straight from the definitions (recursion on lists) -------------


def naive_mth(data: list[bytes]) -> bytes:
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + naive_mth(data[:k]) + naive_mth(data[k:])).digest()


def naive_path(m: int, data: list[bytes]) -> list[bytes]:
    n = len(data)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*naive_path(m, data[:k]), naive_mth(data[k:])]
    return [*naive_path(m - k, data[k:]), naive_mth(data[:k])]


def naive_subproof(m: int, data: list[bytes], b: bool) -> list[bytes]:
    n = len(data)
    if m == n:
        return [] if b else [naive_mth(data)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*naive_subproof(m, data[:k], b), naive_mth(data[k:])]
    return [*naive_subproof(m - k, data[k:], False), naive_mth(data[:k])]


def naive_proof(m: int, data: list[bytes]) -> list[bytes]:
    return naive_subproof(m, data, True)


# -- reference/merkle.md vectors --------------------------------------------------------

LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
LEVEL0 = [
    ROOTS[1],
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
]
LEVEL1 = [
    ROOTS[2],
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
]
LEVEL2 = [ROOTS[4], "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]

# The reference lists proofs by 8-hex-digit prefixes; these name the full hashes above.
INCLUSION = {
    (0, 8): ["96a296d2", "5f083f0a", "6b47aaf2"],
    (5, 8): ["bc1a0643", "ca854ea1", "d37ee418"],
    (2, 3): ["fac54203"],
    (1, 5): ["6e340b9c", "5f083f0a", "bc1a0643"],
    (0, 1): [],
}
CONSISTENCY = {
    (1, 8): ["96a296d2", "5f083f0a", "6b47aaf2"],
    (6, 8): ["0ebc5d34", "ca854ea1", "d37ee418"],
    (2, 5): ["5f083f0a", "bc1a0643"],
    (6, 7): ["0ebc5d34", "b08693ec", "d37ee418"],
    (1, 1): [],
}


def _full(prefix: str) -> bytes:
    matches = {h for h in LEVEL0 + LEVEL1 + LEVEL2 if h.startswith(prefix)}
    assert len(matches) == 1, prefix
    return bytes.fromhex(matches.pop())


def _hashes() -> list[bytes]:
    return [merkle.leaf_hash(d) for d in LEAVES]


def test_hasher_vectors() -> None:
    assert merkle.leaf_hash(b"L123456").hex() == (
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    assert merkle.node_hash(b"N123", b"N456").hex() == (
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )
    assert merkle.EMPTY_ROOT.hex() == ROOTS[0]
    assert merkle.leaf_hash(b"") != merkle.EMPTY_ROOT  # an empty leaf is not the empty tree


@pytest.mark.parametrize("n", range(9))
def test_root_vectors(n: int) -> None:
    hashes = _hashes()
    assert merkle.root_of(hashes[:n]).hex() == ROOTS[n]
    assert naive_mth(LEAVES[:n]).hex() == ROOTS[n]
    compact = CompactRange()
    compact.extend(hashes[:n])
    assert compact.root().hex() == ROOTS[n]


def test_level_vectors() -> None:
    hashes = _hashes()
    assert [h.hex() for h in hashes] == LEVEL0
    assert [merkle.subtree_hash(hashes, 2 * i, 2 * i + 2).hex() for i in range(4)] == LEVEL1
    assert [merkle.subtree_hash(hashes, 4 * i, 4 * i + 4).hex() for i in range(2)] == LEVEL2


@pytest.mark.parametrize(("index", "size"), list(INCLUSION))
def test_inclusion_vectors(index: int, size: int) -> None:
    hashes = _hashes()
    expected = [_full(p) for p in INCLUSION[(index, size)]]
    assert merkle.inclusion_proof(index, size, hashes[:size]) == expected
    merkle.verify_inclusion(index, size, hashes[index], expected, bytes.fromhex(ROOTS[size]))


@pytest.mark.parametrize(("m", "n"), list(CONSISTENCY))
def test_consistency_vectors(m: int, n: int) -> None:
    hashes = _hashes()
    expected = [_full(p) for p in CONSISTENCY[(m, n)]]
    assert merkle.consistency_proof(m, n, hashes[:n]) == expected
    merkle.verify_consistency(m, n, bytes.fromhex(ROOTS[m]), bytes.fromhex(ROOTS[n]), expected)


# -- all sizes up to 64 against the naive implementation --------------------------------

MAX = 64
DATA = [f"leaf {i}".encode() for i in range(MAX)]
HASHES = [merkle.leaf_hash(d) for d in DATA]
NAIVE_ROOTS = [naive_mth(DATA[:n]) for n in range(MAX + 1)]


def test_roots_and_compact_range_for_every_size() -> None:
    compact = CompactRange()
    assert compact.root() == NAIVE_ROOTS[0]
    for n in range(1, MAX + 1):
        compact.append(HASHES[n - 1])
        assert compact.size == n
        assert len(compact.hashes) == bin(n).count("1")
        assert compact.root() == NAIVE_ROOTS[n] == merkle.root_of(HASHES[:n])
        restored = CompactRange.from_bytes(n, compact.to_bytes())
        assert restored.hashes == compact.hashes
        restored.append(b"\x07" * 32)  # the copy grows on its own
        assert compact.size == n


def test_compact_range_rejects_a_wrong_number_of_hashes() -> None:
    with pytest.raises(IntegrityError):
        CompactRange(3, [b"\x00" * 32])
    with pytest.raises(IntegrityError):
        CompactRange.from_bytes(1, b"\x00" * 31)


@pytest.mark.parametrize("size", range(1, MAX + 1))
def test_every_inclusion_proof_matches_the_naive_path(size: int) -> None:
    root = NAIVE_ROOTS[size]
    for index in range(size):
        proof = merkle.inclusion_proof(index, size, HASHES[:size])
        assert proof == naive_path(index, DATA[:size])
        assert len(proof) == merkle.inclusion_proof_length(index, size)
        merkle.verify_inclusion(index, size, HASHES[index], proof, root)


@pytest.mark.parametrize("size", range(1, MAX + 1))
def test_every_consistency_proof_matches_the_naive_proof(size: int) -> None:
    for old in range(1, size + 1):
        proof = merkle.consistency_proof(old, size, HASHES[:size])
        assert proof == naive_proof(old, DATA[:size])
        if old < size:
            assert len(proof) == merkle.consistency_proof_length(old, size)
        merkle.verify_consistency(old, size, NAIVE_ROOTS[old], NAIVE_ROOTS[size], proof)


# -- negative cases (transparency-dev/merkle cmd/proofgen recipe) -----------------------

FLIP = bytes([0x01] + [0] * 31)
RANDOM_ROOT = hashlib.sha256(b"random root").digest()


def _flip(h: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(h, FLIP, strict=True))


def _proof_mutations(proof: list[bytes], root: bytes) -> list[tuple[str, list[bytes]]]:
    out: list[tuple[str, list[bytes]]] = []
    for garbage_name, garbage in (("empty", b""), ("root", root)):
        out.append((f"append {garbage_name}", [*proof, garbage]))
        out.append((f"prepend {garbage_name}", [garbage, *proof]))
    for i in range(len(proof)):
        out.append((f"flip {i}", [*proof[:i], _flip(proof[i]), *proof[i + 1 :]]))
    if proof:
        out.append(("drop last", proof[:-1]))
    for i in range(len(proof) + 1):
        out.append((f"insert at {i}", [*proof[:i], RANDOM_ROOT, *proof[i:]]))
    return out


@pytest.mark.parametrize("size", range(1, MAX + 1))
def test_every_negative_inclusion_case_fails(size: int) -> None:
    root = NAIVE_ROOTS[size]
    for index in range(size):
        proof = merkle.inclusion_proof(index, size, HASHES[:size])
        leaf = HASHES[index]
        cases: list[tuple[str, int, int, bytes, list[bytes], bytes]] = []
        for name, idx in (("index+1", index + 1), ("index-1", index - 1), ("index^2", index ^ 2)):
            if idx != index:
                cases.append((name, idx, size, leaf, proof, root))
        for name, sz in (("size*2", size * 2), ("size/2", size // 2)):
            if sz != size:
                cases.append((name, index, sz, leaf, proof, root))
        cases.append(("wrong leaf", index, size, _flip(leaf), proof, root))
        cases.append(("empty root", index, size, leaf, proof, b""))
        cases.append(("empty-tree root", index, size, leaf, proof, merkle.EMPTY_ROOT))
        cases.append(("random root", index, size, leaf, proof, RANDOM_ROOT))
        for name, mutated in _proof_mutations(proof, root):
            cases.append((name, index, size, leaf, mutated, root))
        for name, idx, sz, lf, pr, rt in cases:
            with pytest.raises(ProofError):
                merkle.verify_inclusion(idx, sz, lf, pr, rt)
                pytest.fail(f"inclusion ({index}, {size}) accepted: {name}")


@pytest.mark.parametrize("size", range(1, MAX + 1))
def test_every_negative_consistency_case_fails(size: int) -> None:
    new_root = NAIVE_ROOTS[size]
    for old in range(1, size + 1):
        old_root = NAIVE_ROOTS[old]
        proof = merkle.consistency_proof(old, size, HASHES[:size])
        cases: list[tuple[str, int, int, bytes, bytes, list[bytes]]] = []
        # The recipe's "index" is the old size (±1, XOR 2), its "tree size" the new one.
        for name, (m, n) in (
            ("old+1", (old + 1, size)),
            ("old-1", (old - 1, size)),
            ("old^2", (old ^ 2, size)),
            ("new*2", (old, size * 2)),
            ("new/2", (old, size // 2)),
        ):
            if (m, n) != (old, size):
                cases.append((name, m, n, old_root, new_root, proof))
        cases.append(("wrong old root", old, size, _flip(old_root), new_root, proof))
        cases.append(("wrong new root", old, size, old_root, _flip(new_root), proof))
        cases.append(("empty old root", old, size, b"", new_root, proof))
        cases.append(("random new root", old, size, old_root, RANDOM_ROOT, proof))
        if old != size:
            cases.append(("roots swapped", old, size, new_root, old_root, proof))
        for name, mutated in _proof_mutations(proof, new_root):
            cases.append((name, old, size, old_root, new_root, mutated))
        for name, m, n, r1, r2, pr in cases:
            with pytest.raises(ProofError):
                merkle.verify_consistency(m, n, r1, r2, pr)
                pytest.fail(f"consistency ({old}, {size}) accepted: {name}")


def test_consistency_from_the_empty_tree_is_rejected() -> None:
    # Decided as transparency-dev does: m = 0 proves nothing, so it is refused both ways.
    with pytest.raises(ValueError):
        merkle.consistency_proof(0, 5, HASHES[:5])
    with pytest.raises(ProofError, match="empty tree"):
        merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, NAIVE_ROOTS[5], [])
    with pytest.raises(ProofError, match="empty tree"):
        merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, NAIVE_ROOTS[5], [NAIVE_ROOTS[5]])
    merkle.verify_consistency(0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [])


def test_trillian_style_bad_sizes_fail() -> None:
    # (0, 0) with a non-empty proof, (−1, 0), a huge size, index beyond the tree.
    with pytest.raises(ProofError):
        merkle.verify_consistency(0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [HASHES[0]])
    with pytest.raises(ProofError):
        merkle.verify_consistency(-1, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [])
    proof = merkle.consistency_proof(3, 8, HASHES[:8])
    with pytest.raises(ProofError):
        merkle.verify_consistency(3, 2**63, NAIVE_ROOTS[3], NAIVE_ROOTS[8], proof)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(8, 8, HASHES[0], [], NAIVE_ROOTS[8])
    with pytest.raises(ValueError):
        merkle.inclusion_proof(8, 8, HASHES[:8])


def test_proof_ranges_cover_the_tree_without_overlap() -> None:
    for size, index in itertools.product(range(1, 40), range(40)):
        if index >= size:
            continue
        ranges = merkle.inclusion_ranges(index, size)
        covered = sorted([index, *itertools.chain.from_iterable(range(a, b) for a, b in ranges)])
        assert covered == list(range(size))
