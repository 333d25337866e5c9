"""The wire: the message envelope and its binary codec (no executable formats)."""

from consortium.wire.codec import ALLOWED_DTYPES, VERSION, Limits, decode, encode, encode_parts
from consortium.wire.envelope import Message, MetaValue

__all__ = [
    "ALLOWED_DTYPES",
    "VERSION",
    "Limits",
    "Message",
    "MetaValue",
    "decode",
    "encode",
    "encode_parts",
]
