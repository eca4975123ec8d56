"""The bundled reference backend: procedural generators and a Runware-compatible server.

It is labelled as a reference backend, never as a model. Generators (``generator``) are
pure and small; the servers speak the Runware protocol on loopback for demos and tests.
"""

from ledger.backends.reference.generator import ReferenceGenerator
from ledger.backends.reference.server import ReferenceServer

__all__ = ["ReferenceGenerator", "ReferenceServer"]
