"""Microsoft Graph ``sendMail`` with the MIME message (delivery ``graph``)."""

from .transport import GRAPH_MAX_REQUEST_BYTES, GraphTransport

__all__ = ["GRAPH_MAX_REQUEST_BYTES", "GraphTransport"]
