"""Checkpoints (C2SP tlog-checkpoint) in signed notes (C2SP signed-note), Ed25519 keys.

Checkpoint body, exactly three lines, each ending in a newline::

    <origin>
    <tree size in decimal, no leading zeros>
    <base64 (RFC 4648 §4) of the 32-byte RFC 6962 root>

No timestamp or other extension line is written, so that independent witnesses could
co-sign byte-identical bodies; the time a checkpoint was made is kept in the database.

Signed note: the body, a blank line, then one line per signature::

    — <key name> <base64(4-byte key ID ‖ 64-byte Ed25519 signature)>

The dash is an em dash (U+2014). The key ID is ``SHA-256(name ‖ 0x0A ‖ 0x01 ‖ pubkey)[:4]``.
Verification ignores signatures by unknown keys, rejects the note when a known key's
signature is invalid, and rejects it when no known key signed it.

Key formats are those of Go's ``golang.org/x/mod/sumdb/note`` so the keys interoperate
with its tooling:

- private key (signer): ``PRIVATE+KEY+<name>+<key id as 8 hex digits>+<base64(0x01 ‖
  32-byte Ed25519 seed)>``
- public key (verifier): ``<name>+<key id as 8 hex digits>+<base64(0x01 ‖ 32-byte public
  key)>``

The signing key is read from a file (``--key-file``) or from the environment variable
``SEEDLEDGER_SIGNING_KEY``, which holds either the private key string itself or the path
of a file containing it. Verifier keys come from ``--key`` options or
``SEEDLEDGER_VERIFIER_KEY`` (verifier strings separated by whitespace or commas, or a
path to a file holding them one per line).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from ledger import config
from ledger.errors import IntegrityError, UsageError

ENV_SIGNING_KEY = config.SIGNING_KEY.name
ENV_VERIFIER_KEY = config.VERIFIER_KEY.name
DEFAULT_KEY_NAME = "localhost/seedledger"

ALG_ED25519 = 0x01
SIG_PREFIX = "\u2014 "  # em dash, space
_PRIVATE_PREFIX = "PRIVATE+KEY+"
_B64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")


class NoteError(IntegrityError):
    """A checkpoint or signed note is malformed or does not verify."""


class NoteFormatError(NoteError):
    """Text that is not a signed note (or checkpoint) at all: no signature was checked."""


def _b64decode(text: str, what: str) -> bytes:
    if not _B64.match(text) or len(text) % 4:
        raise NoteError(f"{what} is not standard padded base64")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise NoteError(f"{what} is not valid base64") from exc


def _check_name(name: str) -> None:
    # signed-note: a key name is non-empty and holds no whitespace and no '+'.
    if not name or "+" in name or any(ch.isspace() for ch in name) or not name.isprintable():
        raise UsageError(f"invalid key name {name!r}: non-empty, no spaces, no '+'")


def key_id(name: str, public_key: bytes) -> bytes:
    """``SHA-256(name ‖ 0x0A ‖ 0x01 ‖ pubkey)[:4]``."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()[:4]


# -- checkpoints ------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog-checkpoint: the log's origin, tree size and RFC 6962 root."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = field(default=())

    def body(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        if not body.endswith("\n"):
            raise NoteError("checkpoint body does not end with a newline")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError("checkpoint body needs origin, size and root lines")
        origin, size_text, root_text, *extensions = lines
        if not origin:
            raise NoteError("checkpoint origin line is empty")
        if not size_text.isascii() or not size_text.isdigit() or (size_text != "0" and size_text[0] == "0"):
            raise NoteError(f"checkpoint size {size_text!r} is not a decimal without leading zeros")
        root = _b64decode(root_text, "checkpoint root")
        if len(root) != 32:
            raise NoteError("checkpoint root is not 32 bytes")
        if any(not line for line in extensions):
            raise NoteError("checkpoint has an empty extension line")
        return cls(origin, int(size_text), root, tuple(extensions))


# -- keys -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verifier:
    """An Ed25519 public key with its note key name and key ID."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if len(self.public_key) != 32:
            raise UsageError("an Ed25519 public key is 32 bytes")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    @property
    def key_id_hex(self) -> str:
        return self.key_id.hex()

    def __str__(self) -> str:
        data = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id_hex}+{data}"

    @classmethod
    def parse(cls, text: str) -> Verifier:
        text = text.strip()
        parts = text.split("+", 2)
        if len(parts) != 3 or text.startswith(_PRIVATE_PREFIX):
            raise UsageError("a verifier key looks like <name>+<8 hex digits>+<base64 key>")
        name, hex_id, data = parts
        _check_name(name)
        try:
            raw = _b64decode(data, "verifier key")
        except NoteError as exc:
            raise UsageError(str(exc)) from None
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise UsageError("verifier key is not an Ed25519 (type 0x01) key")
        verifier = cls(name, raw[1:])
        if verifier.key_id_hex != hex_id.lower():
            raise UsageError(f"verifier key {name}: key ID {hex_id} does not match the key")
        return verifier

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """An Ed25519 private key with its note key name. ``repr`` never shows the key."""

    name: str
    seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if len(self.seed) != 32:
            raise UsageError("an Ed25519 private key seed is 32 bytes")

    @classmethod
    def generate(cls, name: str = DEFAULT_KEY_NAME) -> Signer:
        private = Ed25519PrivateKey.generate()
        seed = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return cls(name, seed)

    @property
    def _private(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @property
    def verifier(self) -> Verifier:
        public = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return Verifier(self.name, public)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def private_key_string(self) -> str:
        data = base64.b64encode(bytes([ALG_ED25519]) + self.seed).decode()
        return f"{_PRIVATE_PREFIX}{self.name}+{self.verifier.key_id_hex}+{data}"

    @classmethod
    def parse(cls, text: str) -> Signer:
        text = text.strip()
        # Never echo the text: it is a secret.
        if not text.startswith(_PRIVATE_PREFIX):
            raise UsageError("a signing key starts with PRIVATE+KEY+ (see `seedledger keys generate`)")
        parts = text[len(_PRIVATE_PREFIX) :].split("+", 2)
        if len(parts) != 3:
            raise UsageError("a signing key looks like PRIVATE+KEY+<name>+<8 hex digits>+<base64>")
        name, hex_id, data = parts
        try:
            raw = _b64decode(data, "signing key")
        except NoteError:
            raise UsageError("signing key data is not valid base64") from None
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise UsageError("signing key is not an Ed25519 (type 0x01) key")
        signer = cls(name, raw[1:])
        if signer.verifier.key_id_hex != hex_id.lower():
            raise UsageError(f"signing key {name}: key ID {hex_id} does not match the key")
        return signer


def write_private_key(path: Path, signer: Signer, *, force: bool = False) -> None:
    """Write the private key file with mode 0600, created that way (never world-readable
    for an instant). Refuses to overwrite unless ``force``."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} exists; pass --force to overwrite it") from None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(signer.private_key_string() + "\n")


def load_signer(key_file: str | Path | None = None, *, env: dict[str, str] | None = None) -> Signer | None:
    """The signing key from ``key_file``, else ``SEEDLEDGER_SIGNING_KEY`` (the key itself
    or a file path), else None."""
    if key_file is None:
        value = config.SIGNING_KEY.raw(env)
        if value is None:
            return None
        if value.startswith(_PRIVATE_PREFIX):
            return Signer.parse(value)
        key_file = value
    path = Path(key_file).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"cannot read signing key file {path}: {reason}") from None
    return Signer.parse(text)


def require_signer(key_file: str | Path | None = None) -> Signer:
    signer = load_signer(key_file)
    if signer is None:
        raise UsageError(
            f"no signing key: pass --key-file FILE or set {ENV_SIGNING_KEY} "
            "(create one with `seedledger keys generate --out FILE`)"
        )
    return signer


def parse_verifiers(values: Iterable[str]) -> list[Verifier]:
    """Verifier keys from strings, each a verifier key or a file path holding them."""
    found: list[Verifier] = []
    for value in values:
        value = value.strip()
        if not value:
            continue
        path = Path(value).expanduser()
        if "+" not in value or path.is_file():
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                raise UsageError(f"cannot read verifier key file {path}") from None
            found.extend(Verifier.parse(tok) for tok in re.split(r"[\s,]+", text) if tok)
            continue
        found.extend(Verifier.parse(tok) for tok in re.split(r"[\s,]+", value) if tok)
    return found


def load_verifiers(
    keys: Sequence[str] = (), *, signer: Signer | None = None, env: dict[str, str] | None = None
) -> list[Verifier]:
    """Known public keys: ``keys``, ``SEEDLEDGER_VERIFIER_KEY``, and the signer's own."""
    verifiers = parse_verifiers(keys)
    from_env = config.VERIFIER_KEY.raw(env)
    if from_env is not None:
        verifiers.extend(parse_verifiers([from_env]))
    if signer is not None:
        verifiers.append(signer.verifier)
    unique: dict[tuple[str, bytes], Verifier] = {}
    for v in verifiers:
        unique.setdefault((v.name, v.key_id), v)
    return list(unique.values())


# -- signed notes -----------------------------------------------------------------------


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """The signed note for ``text`` (which must end in a newline)."""
    if not text.endswith("\n"):
        raise ValueError("note text must end with a newline")
    if "\n\n" in text:
        raise ValueError("note text must not contain a blank line")
    message = text.encode()
    lines = []
    for signer in signers:
        sig = signer.sign(message)
        data = base64.b64encode(signer.verifier.key_id + sig).decode()
        lines.append(f"{SIG_PREFIX}{signer.name} {data}\n")
    return text + "\n" + "".join(lines)


@dataclass(frozen=True)
class SignedNote:
    text: str
    #: (key name, key ID) of every signature that a known key verified.
    verified_by: tuple[Verifier, ...]


def split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """The text of ``note`` and its signature lines as (key name, key ID ‖ signature),
    checking the form only (no key is needed). Raises :class:`NoteFormatError`."""
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteFormatError("signed note has no blank line before its signatures")
    text, sig_block = note[: split + 1], note[split + 2 :]
    if not sig_block.endswith("\n"):
        raise NoteFormatError("signed note does not end with a newline")
    signatures: list[tuple[str, bytes]] = []
    for line in sig_block[:-1].split("\n"):
        if not line.startswith(SIG_PREFIX):
            raise NoteFormatError("signature line does not start with an em dash and a space")
        name, sep, data = line[len(SIG_PREFIX) :].partition(" ")
        if not sep or not name or " " in data:
            raise NoteFormatError("malformed signature line")
        try:
            raw = _b64decode(data, "signature")
        except NoteError as exc:
            raise NoteFormatError(str(exc)) from None
        if len(raw) < 5:
            raise NoteFormatError("signature is too short")
        signatures.append((name, raw))
    return text, signatures


def open_note(note: str, verifiers: Sequence[Verifier]) -> SignedNote:
    """Parse ``note`` and check its signatures against ``verifiers``.

    Unknown keys are ignored; a known key with a bad signature rejects the note; no
    verified signature at all rejects the note. Raises :class:`NoteError`.
    """
    text, signatures = split_note(note)
    known = {(v.name, v.key_id): v for v in verifiers}
    verified: list[Verifier] = []
    message = text.encode()
    for name, raw in signatures:
        verifier = known.get((name, raw[:4]))
        if verifier is None:
            continue  # an unknown key (e.g. a witness): ignored, as signed-note requires
        if not verifier.verify(message, raw[4:]):
            raise NoteError(f"signature by key {name} ({raw[:4].hex()}) does not verify")
        verified.append(verifier)
    if not verified:
        names = ", ".join(f"{v.name}+{v.key_id_hex}" for v in verifiers) or "none"
        raise NoteError(f"no signature by a known key (known: {names})")
    return SignedNote(text, tuple(verified))


def parse_checkpoint_note(note: str) -> Checkpoint:
    """The checkpoint in a signed note, its form checked but no signature: whether a
    file is a checkpoint note at all (bad input) before whether it verifies (integrity).
    Raises :class:`NoteFormatError`."""
    text, _ = split_note(note)
    try:
        return Checkpoint.parse(text)
    except NoteError as exc:
        raise NoteFormatError(str(exc)) from None


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> str:
    return sign_note(checkpoint.body(), [signer])


def open_checkpoint(note: str, verifiers: Sequence[Verifier]) -> tuple[Checkpoint, SignedNote]:
    opened = open_note(note, verifiers)
    return Checkpoint.parse(opened.text), opened
