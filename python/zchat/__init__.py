"""zchat: a client for the zchat broker, written from docs/protocol.md alone.

    from zchat import ZchatClient, ZchatError

The whole API is in zchat.client (message type numbers, error names, the
client); the names most programs need are re-exported here.
"""

from .client import (
    DISTRIBUTE_MESSAGE,
    ERROR_NAMES,
    MESSAGE_SUCCESS,
    MESSAGE_UNDELIVERABLE,
    PROTOCOL_VERSION,
    FetchResult,
    ZchatClient,
    ZchatError,
    error_name,
)

__version__ = "0.1.0"

__all__ = [
    "DISTRIBUTE_MESSAGE",
    "ERROR_NAMES",
    "MESSAGE_SUCCESS",
    "MESSAGE_UNDELIVERABLE",
    "PROTOCOL_VERSION",
    "FetchResult",
    "ZchatClient",
    "ZchatError",
    "error_name",
    "__version__",
]
