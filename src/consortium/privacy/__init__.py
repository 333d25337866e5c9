"""Privacy side libraries used by the federated programs, each imported by its full name
and loading its heavy dependencies only when used: :mod:`.paillier` (additively homomorphic
encryption for the vertical protocols; the ``paillier`` extra), :mod:`.psi` (private set
intersection), :mod:`.secure_sum` (pairwise-masked sums) and :mod:`.dp` (differential
privacy). Nothing here imports from the programs, the runtime or the transports.
"""

from __future__ import annotations

__all__: list[str] = []
