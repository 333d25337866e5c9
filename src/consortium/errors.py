"""The exception tree every layer raises from.

Each error names what went wrong and, where it can, what the user should do.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConsortiumError",
    "DecodeError",
    "PartyCrashed",
    "PluginError",
    "QuorumLost",
    "RunFailed",
    "TooFewUpdates",
    "TransportClosed",
    "TransportError",
    "TransportTimeout",
]


class ConsortiumError(Exception):
    """Base of every error Consortium raises on purpose."""


class ConfigError(ConsortiumError):
    """A job file or setting is invalid. The message names the field and the file."""


class PluginError(ConfigError):
    """A name was looked up in a registry and not found, or registered twice."""


class DecodeError(ConsortiumError):
    """Bytes from the network are not a valid message. The only error decoding raises."""


class TransportError(ConsortiumError):
    """A transport could not move a message."""


class TransportTimeout(TransportError):
    """Nothing arrived before the deadline."""


class TransportClosed(TransportError):
    """The endpoint was closed while sending or waiting."""


class RunFailed(ConsortiumError):
    """A run could not go on. The message names the parties involved."""


class QuorumLost(RunFailed):
    """Fewer parties answered than the quorum requires."""

    def __init__(self, message: str, *, missing: tuple[str, ...]) -> None:
        super().__init__(message)
        self.missing = missing


class PartyCrashed(RunFailed):
    """A party's program raised an exception."""

    def __init__(self, party: str, reason: str) -> None:
        super().__init__(f"party {party!r} crashed: {reason}")
        self.party = party
        self.reason = reason


class TooFewUpdates(RunFailed):
    """An aggregation rule got fewer valid updates than it needs to be safe (Krum, Bulyan, ...).

    ``strategy`` is the rule's registered name; ``needed`` and ``received`` count valid updates.
    """

    def __init__(self, strategy: str, *, needed: int, received: int, why: str, advice: str) -> None:
        super().__init__(
            f"strategy {strategy!r} needs at least {needed} valid updates ({why}) "
            f"but received {received}; {advice}"
        )
        self.strategy = strategy
        self.needed = needed
        self.received = received
