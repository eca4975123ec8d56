"""Build the optional native leaf walker (ledger/integrity/_leafwalk.c).

Everything else is in pyproject.toml. The extension needs the SQLite and OpenSSL
headers (Debian: libsqlite3-dev, libssl-dev); without them the build skips it and
`seedledger verify` uses its pure-Python path.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "ledger.integrity._leafwalk",
            sources=["ledger/integrity/_leafwalk.c"],
            libraries=["sqlite3", "crypto"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
            optional=True,
        )
    ]
)
