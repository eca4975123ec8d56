"""The diffusers backend: replay records on Hugging Face diffusers pipelines.

torch and diffusers are the ``seedledger[diffusers]`` extra and are imported only by
the modules of this package (``runtime``, ``pipelines``, ``backend``), never by
``import ledger``. ``open_backend("diffusers")`` loads them on first use.
"""

__all__ = ["DiffusersBackend"]


def __getattr__(name: str) -> object:
    if name == "DiffusersBackend":
        from ledger.backends.diffusers.backend import DiffusersBackend

        return DiffusersBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
