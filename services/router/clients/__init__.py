"""gRPC adapters that implement the router's ports on the other services' stubs.

These translate between the domain and the contracts, apply per-stage timeouts within the
request deadline, and turn "the peer is unreachable" into StageUnavailable (optional stages) or
DispatcherDown, while statuses the peers sent on purpose keep their code and message.
"""

from services.router.clients.batchers import BatcherReplicas, rendezvous
from services.router.clients.cache import CacheClient
from services.router.clients.compressor import CompressorClient
from services.router.clients.model import ModelClient

__all__ = ["BatcherReplicas", "CacheClient", "CompressorClient", "ModelClient", "rendezvous"]
