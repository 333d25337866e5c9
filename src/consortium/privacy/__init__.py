"""Privacy side libraries used by the federated programs.

Each lives in its own module or subpackage and loads its heavy dependencies only when
used; import them by their full names. Among them:

- :mod:`consortium.privacy.paillier`: additively homomorphic Paillier encryption for the
  vertical protocols (encrypted residuals, encrypted gradients, masked decryption). Needs the
  ``paillier`` extra (``pip install 'consortium[paillier]'``).

Nothing here imports from the programs, the runtime or the transports.
"""

from __future__ import annotations

__all__: list[str] = []
