"""Held-out public media for scripts/evaluate_heldout.py: which Debian packages, which
files in them, and the license each package's copyright file states for each file.

Packages are fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x`` into a
cache folder (nothing is installed). The selection is fixed here, before any result was
seen, and only by content: a file whose geometry or sound another selected file repeats
(the same cube in five files, one song in three codecs) is either left out or put in a
``same`` group, whose pairs are scored as shipped re-encodes rather than other content.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

AUDIO_EXT = {".wav", ".oga", ".ogg", ".mp3", ".flac", ".m4a", ".opus"}
VIDEO_EXT = {".webm", ".mp4", ".mov", ".gif", ".webp"}
MESH_EXT = {".obj", ".ply", ".stl", ".glb", ".gltf"}

_ASSIMP = "usr/share/assimp/models/"
_PYGAME = "usr/share/doc/python-pygame-doc/examples/data/"

#: package -> globs (relative to the unpacked package root) of the files evaluated.
PACKAGES: dict[str, tuple[str, ...]] = {
    "alsa-utils": ("usr/share/sounds/alsa/*.wav",),
    "sound-theme-freedesktop": ("usr/share/sounds/freedesktop/stereo/*.oga",),
    "pocketsphinx-testdata": ("usr/share/pocketsphinx/test/data/cards/*.wav",
                              "usr/share/pocketsphinx/test/data/librivox/*.wav"),
    "python-pygame-doc": tuple(_PYGAME + n for n in (
        "boom.wav", "car_door.wav", "house_lo.wav", "house_lo.ogg", "house_lo.mp3",
        "punch.wav", "secosmic_lo.wav", "whiff.wav")),
    "kodi-data": ("usr/share/kodi/addons/resource.uisounds.kodi/resources/*.wav",
                  "usr/share/kodi/addons/webinterface.default/images/ajax-loader.gif"),
    "gnome-control-center-data": ("usr/share/sounds/gnome/default/alerts/*.ogg",),
    "gnome-user-docs": ("usr/share/help/C/gnome-help/figures/*.webm",),
    "libjs-mediaelement": ("usr/share/javascript/mediaelement/loading.gif",),
    # One file per distinct shape: the cube appears in a dozen test files, one is kept;
    # glTF 1.0, Draco-compressed, point-only and deliberately broken files are left out.
    "assimp-testmodels": tuple(_ASSIMP + n for n in (
        "OBJ/WusonOBJ.obj", "PLY/Wuson.ply", "STL/Wuson.stl",
        "OBJ/spider.obj", "STL/Spider_ascii.stl", "STL/Spider_binary.stl",
        "OBJ/regr01.obj", "OBJ/concave_polygon.obj", "OBJ/box.obj", "OBJ/empty_mat.obj",
        "OBJ/regr_3429812.obj", "STL/3DSMaxExport.STL", "STL/sphereWithHole.stl",
        "STL/triangle.stl", "glTF2/2CylinderEngine-glTF-Binary/2CylinderEngine.glb",
        "glTF2/ClearCoat-glTF/ClearCoatTest.gltf",
        "glTF2/textureTransform/TextureTransformTest.gltf",
        "glTF2/simple_skin/simple_skin.gltf", "glTF2/issue_3269/texcoord_crash.gltf")),
}  # fmt: skip

#: Files of one content in several shipped encodings: their pairs expect identical or
#: near-identical (the same song as WAV, Vorbis and MP3; one model exported three ways).
#: ALSA's channel announcements and noise ship again in sound-theme-freedesktop as
#: Vorbis: chosen as unscored "related" by name first, then measured the same recordings
#: (waveform correlation 0.989-0.999 at lag 0, decoded samples, no fingerprint involved).
SAME: dict[str, str] = {
    **{_PYGAME + f"house_lo.{e}": "pygame-house_lo" for e in ("wav", "ogg", "mp3")},
    **{_ASSIMP + p: "assimp-wuson" for p in ("OBJ/WusonOBJ.obj", "PLY/Wuson.ply", "STL/Wuson.stl")},
    **{_ASSIMP + p: "assimp-spider-stl" for p in ("STL/Spider_ascii.stl", "STL/Spider_binary.stl")},
    "usr/share/sounds/alsa/Noise.wav": "alsa-noise",
    "usr/share/sounds/freedesktop/stereo/audio-test-signal.oga": "alsa-noise",
}

_CHANNEL = re.compile(r"^(?:audio-channel-)?(front|rear|side)[-_](left|right|center)$", re.I)


def same_group(path: str) -> str | None:
    stem = Path(path).stem
    m = _CHANNEL.match(stem)
    if m:  # ALSA's Front_Left.wav is freedesktop's audio-channel-front-left.oga
        return f"alsa-channel-{m.group(1).lower()}-{m.group(2).lower()}"
    return SAME.get(path)


def related(path: str) -> str | None:
    """Pairs of one related group are reported, not scored: the same spider model at
    another scale and vertex count (OBJ vs STL), neither a re-export nor other content."""
    return "spider" if Path(path).stem.lower() in ("spider", "spider_ascii", "spider_binary") else None


def modality_of(path: Path) -> str | None:
    ext = path.suffix.lower()
    return "audio" if ext in AUDIO_EXT else "video" if ext in VIDEO_EXT else "3d" if ext in MESH_EXT else None


@dataclass(frozen=True)
class Source:
    package: str
    version: str
    path: str  # inside the package (or the folder given)
    license: str
    modality: str
    file: Path
    same: str | None = None
    related: str | None = None

    @property
    def name(self) -> str:
        return f"{self.package}:{Path(self.path).name}"


def parse_copyright(text: str) -> list[tuple[list[str], str]]:
    """(file patterns, license name) per ``Files:`` stanza of a machine-readable
    debian/copyright, in order (the last matching stanza wins)."""
    stanzas = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                if key == "files":  # a license's text continues here too: keep its name only
                    fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if "files" in fields and "license" in fields:
            stanzas.append((fields["files"].split(), fields["license"]))
    return stanzas


def license_for(path: str, stanzas: list[tuple[list[str], str]]) -> str:
    """The license of the last stanza whose pattern matches ``path`` or a tail of it (the
    copyright names source paths, the package installs them elsewhere)."""
    found = "not stated in debian/copyright"
    for patterns, name in stanzas:
        for pattern in patterns:
            parts = pattern.split("/")
            tails = ["/".join(parts[k:]) for k in range(len(parts)) if len(parts) - k >= 2 or k == 0]
            if any(fnmatch.fnmatch(path, t) or fnmatch.fnmatch(path, "*/" + t) for t in tails):
                found = name
    return found


def fetch(package: str, cache: Path) -> tuple[Path, str]:
    """The unpacked package root and its version, downloading it once into ``cache``."""
    root = cache / package
    stamp = root / ".version"
    if stamp.exists():
        return root, stamp.read_text().strip()
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", "-q", package], cwd=cache, check=True, capture_output=True)
    deb = max(cache.glob(f"{package}_*.deb"), key=lambda p: p.stat().st_mtime)
    version = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True
    ).stdout.strip()
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    stamp.write_text(version + "\n")
    return root, version


def package_sources(package: str, cache: Path) -> list[Source]:
    root, version = fetch(package, cache)
    copyright_file = root / "usr/share/doc" / package / "copyright"
    stanzas = parse_copyright(copyright_file.read_text(errors="replace")) if copyright_file.exists() else []
    out = []
    for pattern in PACKAGES[package]:
        for file in sorted(root.glob(pattern)):
            if file.is_symlink() or not file.is_file() or (modality := modality_of(file)) is None:
                continue
            rel = file.relative_to(root).as_posix()
            out.append(
                Source(package, version, "/" + rel, license_for(rel, stanzas), modality, file,
                       same_group(rel), related(rel))
            )  # fmt: skip
    return out


def folder_sources(folder: Path) -> list[Source]:
    """Every media file under ``folder`` (by extension), with no package or license."""
    out = []
    for file in sorted(folder.rglob("*")):
        if file.is_file() and (modality := modality_of(file)) is not None:
            rel = file.relative_to(folder).as_posix()
            out.append(Source(folder.name, "-", rel, "not stated", modality, file, None, related(rel)))
    return out
