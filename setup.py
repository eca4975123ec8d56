"""Build the optional native leaf walker (ledger/integrity/_leafwalk/*.c).

Everything else is in pyproject.toml. The extension needs a C compiler and the SQLite
and OpenSSL headers (Debian: gcc, libsqlite3-dev, libssl-dev); without them the build
skips it, says so on stderr (pip shows it with -v), and `seedledger verify`/`seal` use
their pure-Python path. SEEDLEDGER_REQUIRE_NATIVE=1 turns a skipped build into an error.
"""

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import BaseError, CCompilerError

SOURCES = sorted(str(p) for p in Path("ledger/integrity/_leafwalk").glob("*.c"))
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
        text = str(error) if error else ""
        if "sqlite3.h" in text:
            why = "sqlite3.h is missing (libsqlite3-dev)"
        elif "openssl/" in text:
            why = "the OpenSSL headers are missing (libssl-dev)"
        elif error is None or "command" in text.lower() or "not found" in text.lower():
            why = f"no working C compiler ({text or 'the build produced nothing'})"
        else:
            why = f"the build failed ({text})"
        sys.stderr.write(WARNING.format(why=why))
        if os.environ.get("SEEDLEDGER_REQUIRE_NATIVE", "").strip() == "1":
            raise SystemExit(f"SEEDLEDGER_REQUIRE_NATIVE=1 and {ext.name} was not built: {why}")


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
