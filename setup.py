"""Build the optional native leaf walker (ledger/integrity/_leafwalk.c).

Everything else is in pyproject.toml. The extension needs the SQLite and OpenSSL
headers (Debian: libsqlite3-dev, libssl-dev); without them the build skips it and
`seedledger verify` uses its pure-Python path, about 15 times slower. That is said
loudly here (a build-time warning on stderr; `pip install -v` shows it) and again by
every `verify` and `seal` (their `path` and `path_reason` output).
"""

import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

WARNING = (
    "\n*** seedledger: WARNING: the native leaf walker (ledger/integrity/_leafwalk.c) was not built: {error}\n"
    "*** `seedledger verify` and `seal` will use the pure-Python path (about 15x slower) and say so.\n"
    "*** Install a C compiler and the SQLite and OpenSSL headers (Debian: build-essential "
    "libsqlite3-dev libssl-dev), then reinstall.\n"
)


class BuildExt(build_ext):
    """Optional extension: a failed build is not an error, but never a silent one."""

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # compiler missing, headers missing, link failure
            sys.stderr.write(WARNING.format(error=f"{type(exc).__name__}: {exc}".strip()))
            sys.stderr.flush()


setup(
    cmdclass={"build_ext": BuildExt},
    ext_modules=[
        Extension(
            "ledger.integrity._leafwalk",
            sources=["ledger/integrity/_leafwalk.c"],
            libraries=["sqlite3", "crypto"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
        )
    ],
)
