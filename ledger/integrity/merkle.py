"""RFC 6962 / RFC 9162 Merkle tree: hashing, roots, proofs, and a compact range.

Pure: no I/O, no database. Hashes are 32-byte ``bytes``.

- Hashing (RFC 6962 §2.1): ``MTH({}) = SHA-256("")``, leaf = ``SHA-256(0x00 ‖ d)``,
  node = ``SHA-256(0x01 ‖ left ‖ right)``; a tree of n > 1 leaves splits at k, the
  largest power of two strictly below n.
- Proof generation follows RFC 6962 §2.1.1 ``PATH`` and §2.1.2 ``PROOF``, expressed as
  the list of leaf *ranges* whose subtree hashes make up the proof. A caller that keeps
  leaf hashes elsewhere (the database) computes each range's hash by streaming the leaf
  hashes of that range in index order through a :class:`CompactRange`: proof
  generation then needs O(log n) memory, never every leaf at once.
- Verification follows RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency). Each
  numbered step of the RFC is marked ``# (n)`` in the code. As transparency-dev/merkle
  does, the exact proof length is computed first and any other length is rejected.
- Consistency from the empty tree (m = 0) is rejected, as transparency-dev/merkle does:
  an empty tree commits to nothing, so a "proof" from it proves nothing. A verifier that
  holds a size-0 checkpoint compares nothing and simply accepts the new checkpoint on its
  signature (see ``ledger.integrity.verify``).
- :class:`CompactRange` is the incremental state for appending (transparency-dev
  ``compact/range.go`` for ranges that start at 0): the hashes of the perfect subtrees
  that cover leaves ``[0, size)``, largest first, one per set bit of ``size``. Appending a
  leaf merges at most log2(size) nodes; the root folds the list right to left.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from ledger.errors import IntegrityError

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
#: MTH({}): the hash of the empty string, not the hash of an empty leaf.
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256

Range = tuple[int, int]  # [start, end) leaf indexes


class ProofError(IntegrityError):
    """A Merkle proof does not verify. The message names the failing RFC step."""


# -- hashing (RFC 6962 §2.1) ------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 ‖ data)``."""
    return _sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 ‖ left ‖ right)``."""
    return _sha256(NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """k: the largest power of two strictly less than ``n`` (n ≥ 2)."""
    if n < 2:
        raise ValueError(f"a tree of {n} leaves has no split")
    return 1 << ((n - 1).bit_length() - 1)


# -- compact range ----------------------------------------------------------------------


class CompactRange:
    """Incremental RFC 6962 root over leaves ``[0, size)``.

    ``hashes`` holds one perfect-subtree hash per set bit of ``size``, largest subtree
    first. Persist it with :meth:`to_bytes` and restore with :meth:`from_bytes`.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0:
            raise ValueError("size must not be negative")
        if len(hashes) != size.bit_count():
            raise IntegrityError(
                f"compact range for size {size} needs {size.bit_count()} hashes, got {len(hashes)}"
            )
        if any(len(h) != HASH_SIZE for h in hashes):
            raise IntegrityError("compact range holds a hash that is not 32 bytes")
        self._size = size
        self._hashes = list(hashes)

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def append(self, leaf: bytes) -> None:
        """Append one *leaf hash*: O(log size) node hashes at most."""
        hashes = self._hashes
        hashes.append(leaf)
        size = self._size
        # Each trailing 1 bit of the old size is a perfect subtree of the same height as
        # the carry coming up from the right: merge them, as binary addition carries.
        while size & 1:
            right = hashes.pop()
            hashes[-1] = _sha256(NODE_PREFIX + hashes[-1] + right).digest()
            size >>= 1
        self._size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """MTH of leaves ``[0, size)``: fold the subtrees right to left."""
        if not self._hashes:
            return EMPTY_ROOT
        it = reversed(self._hashes)
        root = next(it)
        for left in it:
            root = node_hash(left, root)
        return root

    def copy(self) -> CompactRange:
        return CompactRange(self._size, self._hashes)

    def to_bytes(self) -> bytes:
        return b"".join(self._hashes)

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> CompactRange:
        if len(data) % HASH_SIZE:
            raise IntegrityError("stored compact range is not a whole number of 32-byte hashes")
        return cls(size, [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)])


def root_of(leaf_hashes: Iterable[bytes]) -> bytes:
    """MTH over leaf hashes given in index order (streamed: O(log n) memory)."""
    compact = CompactRange()
    compact.extend(leaf_hashes)
    return compact.root()


# -- proof generation (RFC 6962 §2.1.1, §2.1.2) -----------------------------------------


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The leaf ranges whose subtree hashes form ``PATH(index, D[size])``, leaf to root."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    path: list[Range] = []
    start, end, m = 0, size, index
    # Walk root → leaf and reverse: PATH(m, D[n]) = PATH(...) + [sibling].
    while end - start > 1:
        k = split_point(end - start)
        if m < k:  # PATH(m, D[0:k]) + [MTH(D[k:n])]
            path.append((start + k, end))
            end = start + k
        else:  # PATH(m − k, D[k:n]) + [MTH(D[0:k])]
            path.append((start, start + k))
            start, m = start + k, m - k
    path.reverse()
    return path


def consistency_ranges(old_size: int, new_size: int) -> list[Range]:
    """The leaf ranges whose subtree hashes form ``PROOF(m, D[n])``.

    Rejects m = 0 (see the module docstring) and m > n.
    """
    if old_size <= 0:
        raise ValueError("a consistency proof from the empty tree is meaningless")
    if old_size > new_size:
        raise ValueError(f"old size {old_size} is larger than new size {new_size}")
    proof: list[Range] = []
    start, end, m, complete = 0, new_size, old_size, True
    while True:
        n = end - start
        if m == n:
            # SUBPROOF(m, D[m], true) = []; SUBPROOF(m, D[m], false) = [MTH(D[m])]
            if not complete:
                proof.append((start, end))
            break
        k = split_point(n)
        if m <= k:  # SUBPROOF(m, D[0:k], b) + [MTH(D[k:n])]
            proof.append((start + k, end))
            end = start + k
        else:  # SUBPROOF(m − k, D[k:n], false) + [MTH(D[0:k])]
            proof.append((start, start + k))
            start, m, complete = start + k, m - k, False
    proof.reverse()
    return proof


def subtree_hash(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    """MTH(D[start:end]) over an in-memory list of leaf hashes."""
    return root_of(leaf_hashes[start:end])


def inclusion_proof(
    index: int, size: int, range_hash: Callable[[int, int], bytes] | Sequence[bytes]
) -> list[bytes]:
    """``PATH(index, D[size])``. ``range_hash(start, end)`` returns MTH(D[start:end]);
    a sequence of leaf hashes may be passed instead."""
    get = _range_hasher(range_hash)
    return [get(a, b) for a, b in inclusion_ranges(index, size)]


def consistency_proof(
    old_size: int, new_size: int, range_hash: Callable[[int, int], bytes] | Sequence[bytes]
) -> list[bytes]:
    """``PROOF(old_size, D[new_size])`` (see :func:`inclusion_proof` for range_hash)."""
    get = _range_hasher(range_hash)
    return [get(a, b) for a, b in consistency_ranges(old_size, new_size)]


def _range_hasher(
    source: Callable[[int, int], bytes] | Sequence[bytes],
) -> Callable[[int, int], bytes]:
    if callable(source):
        return source
    leaves = source
    return lambda a, b: subtree_hash(leaves, a, b)


# -- verification (RFC 9162 §2.1.3.2, §2.1.4.2) -----------------------------------------


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofError(f"{what} is not a 32-byte hash")


def inclusion_proof_length(index: int, size: int) -> int:
    """Exact length of ``PATH(index, D[size])`` (transparency-dev ``decompInclProof``):
    the inner part below the point where the paths to ``index`` and ``size − 1`` part,
    plus one border node per set bit of ``index`` above it."""
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner + border


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2: check that ``leaf`` (a leaf *hash*) is at ``index`` in the tree
    of ``size`` leaves with ``root``. Raises :class:`ProofError` naming the failed step."""
    _check_hash(leaf, "leaf hash")
    _check_hash(root, "root")
    for i, p in enumerate(proof):
        _check_hash(p, f"proof element {i}")
    # (1) If leaf_index >= tree_size, fail.
    if index < 0 or index >= size:
        raise ProofError(f"step 1: leaf index {index} is not below tree size {size}")
    # Exact length first (transparency-dev): step 4's sn == 0 check implies it, but a
    # length error is clearer than a root mismatch.
    expected = inclusion_proof_length(index, size)
    if len(proof) != expected:
        raise ProofError(f"inclusion proof has {len(proof)} hashes, expected {expected}")
    # (2) Set fn to leaf_index and sn to tree_size − 1.
    fn, sn = index, size - 1
    # (3) Set r to hash.
    r = leaf
    # (4) For each value p in the inclusion_path array:
    for p in proof:
        # (4a) If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            raise ProofError("step 4a: inclusion proof is longer than the path to the root")
        # (4b) If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            # (4b.i) Set r to HASH(0x01 || p || r).
            r = node_hash(p, r)
            # (4b.ii) If LSB(fn) is not set, right-shift fn and sn equally until either
            # LSB(fn) is set or fn is 0.
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        # (4c) Otherwise: set r to HASH(0x01 || r || p).
        else:
            r = node_hash(r, p)
        # (4d) Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # (5) Compare sn to 0. Compare r against the root hash. If sn is equal to 0 and r
    # and the root hash are equal, then the log has proven the inclusion of hash.
    if sn != 0:
        raise ProofError("step 5: inclusion proof is shorter than the path to the root")
    if r != root:
        raise ProofError("step 5: inclusion proof does not lead to the checkpoint root")


def consistency_proof_length(old_size: int, new_size: int) -> int:
    """Exact length of ``PROOF(old_size, D[new_size])`` for 0 < old_size < new_size
    (transparency-dev ``VerifyConsistency``): the inclusion path of leaf m − 1 minus the
    levels inside the old tree's rightmost perfect subtree (2^shift leaves, shift =
    trailing zeros of m), plus that subtree's hash as the seed, unless m is a power of
    two and the old root itself is the seed."""
    shift = (old_size & -old_size).bit_length() - 1
    length = inclusion_proof_length(old_size - 1, new_size) - shift
    if old_size != 1 << shift:
        length += 1
    return length


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2: check that the tree of ``new_size`` leaves with ``new_root``
    extends the tree of ``old_size`` leaves with ``old_root``. Raises :class:`ProofError`."""
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    for i, p in enumerate(proof):
        _check_hash(p, f"proof element {i}")
    if old_size < 0 or new_size < 0:
        raise ProofError("tree sizes must not be negative")
    if old_size > new_size:
        raise ProofError(f"old size {old_size} is larger than new size {new_size}")
    # (1) If first is equal to second, the proof must be empty and the roots equal
    # (RFC 9162 leaves this case to the caller; transparency-dev checks it here).
    if old_size == new_size:
        if proof:
            raise ProofError("step 1: proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError(f"step 1: roots differ at the same size {old_size}")
        return
    # m = 0 is rejected by design (module docstring).
    if old_size == 0:
        raise ProofError("a consistency proof from the empty tree is meaningless")
    # (1) If consistency_path is an empty array, stop and fail the proof verification.
    if not proof:
        raise ProofError("step 1: consistency proof is empty")
    expected = consistency_proof_length(old_size, new_size)
    if len(proof) != expected:
        raise ProofError(f"consistency proof has {len(proof)} hashes, expected {expected}")
    # (2) If first is an exact power of 2, then prepend first_hash to the
    # consistency_path array.
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # (3) Set fn to first − 1 and sn to second − 1.
    fn, sn = old_size - 1, new_size - 1
    # (4) If LSB(fn) is set, then right-shift both fn and sn equally until LSB(fn) is
    # not set.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # (5) Set both fr and sr to the first value in the consistency_path array.
    fr = sr = path[0]
    # (6) For each subsequent value c in the consistency_path array:
    for c in path[1:]:
        # (6a) If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            raise ProofError("step 6a: consistency proof is longer than the path to the root")
        # (6b) If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            # (6b.i) Set fr to HASH(0x01 || c || fr). Set sr to HASH(0x01 || c || sr).
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            # (6b.ii) If LSB(fn) is not set, then right-shift both fn and sn equally
            # until either LSB(fn) is set or fn is 0.
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        # (6c) Otherwise: set sr to HASH(0x01 || sr || c).
        else:
            sr = node_hash(sr, c)
        # (6d) Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # (7) After completing iterating through the consistency_path array as described
    # above, verify that the fr calculated is equal to the first_hash supplied, that the
    # sr calculated is equal to the second_hash supplied, and that sn is 0.
    if sn != 0:
        raise ProofError("step 7: consistency proof is shorter than the path to the root")
    if fr != old_root:
        raise ProofError("step 7: consistency proof does not lead to the old root")
    if sr != new_root:
        raise ProofError("step 7: consistency proof does not lead to the new root")
