"""Test helpers shipped with Consortium: contract suites every implementation must pass.

Importing this package needs pytest (a development dependency), which the suites build on.
"""

from consortium.testing.extras import needs, skip_without_extras
from consortium.testing.transport_suite import TransportContract, assert_same_message

__all__ = ["TransportContract", "assert_same_message", "needs", "skip_without_extras"]
