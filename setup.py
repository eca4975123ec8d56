"""Build the optional native leaf walker (ledger/integrity/_leafwalk/*.c).

Everything else is in pyproject.toml. The extension needs a C compiler and the SQLite
and OpenSSL headers (Debian: gcc, libsqlite3-dev, libssl-dev); without them the build
skips it, says so on stderr (pip shows it with -v), and `seedledger verify`/`seal` use
their pure-Python path. SEEDLEDGER_REQUIRE_NATIVE=1 turns a skipped build into an error.
"""

import os
import sys
import tempfile
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import BaseError, CCompilerError, CompileError

SOURCES = sorted(str(p) for p in Path("ledger/integrity/_leafwalk").glob("*.c"))
HEADERS = (("Python.h", "python3-dev"), ("sqlite3.h", "libsqlite3-dev"), ("openssl/evp.h", "libssl-dev"))
WARNING = """
************************************************************************************
WARNING: the native leaf walker (ledger.integrity._leafwalk) was not built: {why}.
seedledger works without it, but `seedledger verify` and `seal` take the pure-Python
path, about 15x slower on large logs. Install a C compiler and the SQLite and OpenSSL
headers (Debian: apt-get install gcc libsqlite3-dev libssl-dev) and reinstall.
************************************************************************************
"""


class OptionalBuildExt(build_ext):
    """build_ext that names what is missing when the optional walker cannot be built."""

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except (CCompilerError, BaseError) as e:  # CompileError, LinkError, PlatformError, ...
            self._skipped(ext, e)
            return
        if not Path(self.get_ext_fullpath(ext.name)).exists():
            self._skipped(ext, None)

    def _skipped(self, ext: Extension, error: Exception | None) -> None:
        text = str(error) if error else "the build produced nothing"
        lowered = text.lower()
        if "exit code" not in lowered and ("no such file" in lowered or "not found" in lowered):
            why = f"no C compiler ({text})"
        else:
            why = self._missing_header() or "the compiler or linker failed (its messages are above)"
        sys.stderr.write(WARNING.format(why=why))
        if os.environ.get("SEEDLEDGER_REQUIRE_NATIVE", "").strip() == "1":
            raise SystemExit(f"SEEDLEDGER_REQUIRE_NATIVE=1 and {ext.name} was not built: {why}")

    def _missing_header(self) -> str | None:
        """The first header the walker needs that the compiler cannot find, named with its package."""
        for header, package in HEADERS:
            with tempfile.TemporaryDirectory() as tmp:
                probe = Path(tmp, "probe.c")
                probe.write_text(f"#include <{header}>\n")
                try:
                    self.compiler.compile([str(probe)], output_dir=tmp, include_dirs=self.include_dirs)
                except CompileError:
                    return f"{header} is missing (Debian: {package})"
        return None


setup(
    cmdclass={"build_ext": OptionalBuildExt},
    ext_modules=[
        Extension(
            "ledger.integrity._leafwalk",
            sources=SOURCES,
            depends=["ledger/integrity/_leafwalk/leafwalk.h"],
            libraries=["sqlite3", "crypto"],
            extra_compile_args=[
                "-O2",
                "-std=c11",
                "-Wall",
                "-Wextra",
                "-Wno-missing-field-initializers",
                "-fvisibility=hidden",  # one module: only PyInit__leafwalk is exported
            ],
            optional=True,
        )
    ],
)
