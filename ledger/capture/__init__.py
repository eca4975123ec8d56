"""Production capture: record every generation, lose none, slow nothing.

The httpx recording transports, the recording proxy, the in-process API (and
``record_pipeline`` for diffusers pipelines), and the
durable spool with its background writer (see ``spool.py`` for the durability promise).
"""

from ledger.capture.api import Generation, default_recorder, generation, record_generation
from ledger.capture.pipelines import RecordedPipeline, record_pipeline
from ledger.capture.recorder import ENV_SPOOL, Recorder, resolve_spool
from ledger.capture.spool import Spool, SpoolError, SpoolLockedError
from ledger.capture.transport import (
    AsyncRecordingTransport,
    RecordingTransport,
    async_recording_client,
    recording_client,
)
from ledger.capture.writer import Counters, SpoolWriter

__all__ = [
    "ENV_SPOOL",
    "AsyncRecordingTransport",
    "Counters",
    "Generation",
    "RecordedPipeline",
    "Recorder",
    "RecordingTransport",
    "Spool",
    "SpoolError",
    "SpoolLockedError",
    "SpoolWriter",
    "async_recording_client",
    "default_recorder",
    "generation",
    "record_generation",
    "record_pipeline",
    "recording_client",
    "resolve_spool",
]
