"""The arbitered mode's arithmetic, without I/O: vertical linear and logistic regression on
Paillier ciphertexts, with the gradients masked before the arbiter decrypts them.

The scheme is that of Hardy et al., "Private federated learning on vertically partitioned
data via entity resolution and additively homomorphic encryption", arXiv:1711.10677, 2017
(section 3), with the roles of Stalactite's arbitered mode: the arbiter generates the
Paillier keypair and keeps the private key; the master (labels) and the members (columns)
hold the public key. For a batch of ``B`` rows, one step is:

1. each member encrypts its partial output ``[[u_p]] = [[X_p W_p]]`` for the master;
2. the master adds them and its own ``u_0 = X_0 W_0 + b`` (in plaintext) into ``[[z]]`` and
   sends every member the gradient of the loss w.r.t. the output, scaled by an integer
   ``s``: ``[[s d]]`` (see below);
3. every party with columns computes ``X_p^T [[s d]]`` by multi-exponentiation (the master's
   block carries a column of ones for the intercept), adds a uniform mask in Z_n and sends
   the masked ciphertexts to the arbiter;
4. the arbiter returns their decryptions, residues uniform and independent of the gradient;
   the party subtracts its mask, divides by ``s`` and steps as in honest mode
   (``W <- W - lr (X^T d + l2 W)``).

To predict, the master masks ``[[z]]`` of the rows and has the arbiter decrypt it the same
way: the master learns the outputs, nobody else does.

The link, linearised
--------------------
Paillier adds ciphertexts and multiplies them by plaintexts, nothing more, so the gradient
``d = (p - t) / B`` must be affine in ``z``. For regression it is (``p = z``). For the
logistic and softmax links the protocol uses their first-order Taylor expansion at
``z = 0``, as Hardy et al. do (their equation 4, for labels in {-1, 1}):

- two classes: ``sigmoid(z) ~ 1/2 + z/4``, so ``d = (z/4 + 1/2 - y) / B``;
- ``K`` classes: ``softmax(z)_k ~ 1/K + (z_k - mean_j z_j) / K``, so
  ``d_k = ((z_k - mean_j z_j)/K + 1/K - t_k) / B`` (the two-class case is this with
  ``K = 2`` and one output fixed at 0).

This is gradient descent on the second-order Taylor expansion of the cross-entropy at
``z = 0``: it tracks the exact gradient while the outputs stay near zero (``|z| < 2`` keeps
the sigmoid's error under 0.1) and trains a model close to, not equal to, the honest mode's.
Predictions use the exact link, at the master, on the decrypted outputs.

Fixed point, exactly
--------------------
The master multiplies by ``s`` (``B``, ``4B`` or ``K^2 B``) so that every coefficient is an
integer: ``s d`` is ``z - y``, ``z + 2 - 4y`` or ``K z - sum_j z_j + K - K^2 t``. Integer
operations keep the fixed-point exponent, so the only rounding is where values are encoded
(each ``u_p``, ``y`` and ``X_p`` to ``2^-precision``), and the decrypted gradient is the
exact sum of the encoded terms: runs with the same seed give the same model to the bit,
whatever the randomness of the ciphertexts.

Public bounds
-------------
Each party packs its masked values several to a ciphertext before the arbiter decrypts
them (``privacy.paillier.masking``). The packing needs a bound that is both proven and
public: laid out from the values' own magnitudes, the number of ciphertexts would tell the
arbiter about them. So the protocol fixes public limits, far beyond any model that trains:
every feature, partial output and regression target is at most ``2^62`` in magnitude
(:data:`VALUE_LIMIT_BITS`), a batch at most ``2^32`` rows (:data:`ROWS_LIMIT_BITS`). From
them and public settings the master bounds ``[[s d]]`` (:func:`residual_bound`), checks its
own against it and announces it; each party bounds its gradient by it
(:func:`gradient_bound`), the master its prediction outputs (:func:`output_bound`), so the
layout depends on the job and the key alone. Members check their outputs before encrypting
them; every other value is checked through the bound its arithmetic proves: where a party's
values could exceed the public bound they are packed by, the run fails saying so.
"""

from __future__ import annotations

import numpy as np

from consortium.errors import RunFailed
from consortium.ml.datasets import Task
from consortium.privacy.paillier import (
    Encoding,
    EncodingOverflow,
    EncryptedArray,
    InvalidCiphertext,
    Mask,
    ObfuscatorPool,
    PaillierError,
    ParallelPaillier,
    PrivateKey,
    PublicKey,
    ciphertexts_from_array,
    ciphertexts_to_array,
    decrypt_residues,
    encrypt,
    mask,
    residues_from_array,
    residues_to_array,
    rmatvec,
)
from consortium.vertical.parts import targets
from consortium.vertical.settings import PaillierSettings

__all__ = [
    "ROWS_LIMIT_BITS",
    "VALUE_LIMIT_BITS",
    "Keyring",
    "decrypt_masked",
    "gradient_bound",
    "output_bound",
    "residual_bound",
    "scaled_residual",
    "taylor_residual",
    "value_limit",
]

# Public limits (see the module's docstring): every feature, partial output ``X_p W_p`` and
# regression target is at most 2^62 in magnitude, and a batch has at most 2^32 rows.
VALUE_LIMIT_BITS = 62
ROWS_LIMIT_BITS = 32


def value_limit(precision: int) -> int:
    """The public limit on a feature, partial output or target, encoded at ``precision``."""
    return 1 << (VALUE_LIMIT_BITS + precision)


def residual_bound(task: Task, n_outputs: int, parties: int, precision: int) -> int:
    """A bound on every encoded ``|s d|`` when ``parties`` partial outputs (the master's
    included), each within :func:`value_limit`, make ``z``: what :func:`scaled_residual`'s
    arithmetic proves (``K z_k - sum_j z_j + K - K^2 t`` is within ``2 K max|z| + K^2``)."""
    limit = value_limit(precision)
    if task == "regression" or n_outputs == 1:
        return (parties + 1) * limit
    k = n_outputs
    return (2 * k * parties + k * k) * limit


def gradient_bound(residual_bits: int, precision: int) -> int:
    """A public bound on every encoded entry of ``X_p^T [[s d]]`` when ``|s d| < 2^bits``:
    at most ``2^32`` rows, each feature within :func:`value_limit`."""
    return (1 << (residual_bits + ROWS_LIMIT_BITS)) * value_limit(precision)


def output_bound(parties: int, precision: int) -> int:
    """A public bound on every encoded ``z = sum_p X_p W_p`` over ``parties`` parties."""
    return parties * value_limit(precision)


def scaled_residual(
    z: EncryptedArray, y: np.ndarray, *, task: Task, n_outputs: int
) -> tuple[EncryptedArray, int]:
    """``([[s d]], s)`` from the encrypted outputs ``[[z]]`` (rows, outputs) and the labels,
    with the linearised link (see the module's docstring)."""
    rows = len(y)
    if z.shape != (rows, n_outputs):
        raise ValueError(f"z has shape {z.shape}, expected {(rows, n_outputs)}")
    t = targets(y, task, n_outputs)
    if task == "regression":
        return z - t, rows
    if n_outputs == 1:
        return z + (2 - 4 * t.astype(np.int64)), 4 * rows
    k = n_outputs
    total = z.sum(axis=1).reshape(rows, 1)
    return z * k - total + (k - k * k * t.astype(np.int64)), k * k * rows


def taylor_residual(z: np.ndarray, y: np.ndarray, *, task: Task, n_outputs: int) -> np.ndarray:
    """The plaintext ``d`` that :func:`scaled_residual` encrypts (divided by ``s``)."""
    z = np.asarray(z, dtype=np.float64)
    rows = len(y)
    t = targets(y, task, n_outputs)
    if task == "regression":
        p = z
    elif n_outputs == 1:
        p = 0.5 + z / 4.0
    else:
        p = 1.0 / n_outputs + (z - z.mean(axis=1, keepdims=True)) / n_outputs
    return (p - t) / rows


class Keyring:
    """What a party holds of the arbiter's key: the public key, the encoding, its own pool
    of obfuscators and, when the job allows, worker processes. Encrypts, serialises,
    loads and masks; never decrypts."""

    def __init__(self, public_key: PublicKey, settings: PaillierSettings) -> None:
        self.public_key = public_key
        self.encoding = Encoding(precision=settings.precision)
        self.limit = value_limit(settings.precision)
        self.pool = ObfuscatorPool(public_key)
        self.parallel = ParallelPaillier(workers=settings.workers) if settings.workers else None

    def close(self) -> None:
        self.pool.clear()
        if self.parallel is not None:
            self.parallel.close()
            self.parallel = None

    def reserve(self, count: int) -> None:
        """Before taking ``count`` obfuscators: with worker processes, have twice that many
        ready or in the making, so that the next step's (of the same size) are computed
        while this party waits for the others. Without workers each is made when taken."""
        if self.parallel is not None:
            short = 2 * count - len(self.pool) - self.pool.pending
            if short > 0:
                self.pool.fill(short, parallel=self.parallel, wait=False)

    def encrypt(self, values: np.ndarray) -> EncryptedArray:
        """This party's partial outputs, encrypted; RunFailed beyond the protocol's limit."""
        if not (np.abs(np.asarray(values, dtype=np.float64)) <= 2.0**VALUE_LIMIT_BITS).all():
            raise RunFailed(
                f"a partial output exceeds 2^{VALUE_LIMIT_BITS} in magnitude (or is not "
                "finite), beyond the arbitered protocol's public limit: scale the data"
            )
        self.reserve(int(np.size(values)))
        return encrypt(self.public_key, values, encoding=self.encoding, obfuscators=self.pool)

    def to_wire(self, encrypted: EncryptedArray) -> np.ndarray:
        """Ciphertexts as a uint8 tensor, re-randomised if derived from someone else's."""
        if encrypted.derived:
            self.reserve(encrypted.size)
        return ciphertexts_to_array(encrypted, obfuscators=self.pool)

    def from_wire(
        self, arr: object, *, exponent: object, shape: tuple[int, ...], bound: int
    ) -> EncryptedArray:
        """Load ciphertexts of the given shape and exponent, whose encoded values the
        protocol bounds by ``bound``; RunFailed for anything else."""
        if not isinstance(exponent, int) or isinstance(exponent, bool) or exponent < 0:
            raise RunFailed(f"ciphertexts need a non-negative integer exponent, got {exponent!r}")
        if not isinstance(arr, np.ndarray) or arr.shape[:-1] != shape:
            got = getattr(arr, "shape", None)
            raise RunFailed(f"expected ciphertexts of shape {shape}, got {got}")
        try:
            return ciphertexts_from_array(
                self.public_key, arr, exponent=exponent, encoding=self.encoding, bound=bound
            )
        except InvalidCiphertext:
            raise RunFailed("invalid ciphertexts") from None

    def gradient(self, x: np.ndarray, d: EncryptedArray) -> EncryptedArray:
        """``X^T [[d]]`` for ``[[d]]`` of shape (rows of ``x``, outputs); RunFailed where its
        values could outgrow the key."""
        product = rmatvec if self.parallel is None else self.parallel.rmatvec
        try:
            columns = [product(x, d[:, k]) for k in range(d.shape[1])]  # one per output
        except EncodingOverflow as exc:
            raise RunFailed(f"the encrypted gradient could overflow the key: {exc}") from None
        bounds = [c.bound for c in columns]
        return EncryptedArray(
            self.public_key,
            np.stack([c.ciphertexts for c in columns], axis=1),
            exponent=columns[0].exponent,
            encoding=columns[0].encoding,
            bound=None if None in bounds else max(b for b in bounds if b is not None),
            derived=True,
        )

    def masked(self, encrypted: EncryptedArray, *, bound: int) -> tuple[np.ndarray, Mask]:
        """``encrypted``, packed by the public ``bound`` and masked, for the arbiter (the
        wire tensor), and the mask, which never leaves this party. RunFailed when the
        values' proven bound exceeds the public one (a value broke a public limit)."""
        try:
            hidden, secret = mask(encrypted, bound=bound)
        except EncodingOverflow:
            raise RunFailed(
                f"values beyond the arbitered protocol's public limits (features, outputs "
                f"and targets at most 2^{VALUE_LIMIT_BITS} in magnitude, batches at most "
                f"2^{ROWS_LIMIT_BITS} rows): scale the data"
            ) from None
        return self.to_wire(hidden), secret

    def unmask(self, secret: Mask, arr: object, scale: int = 1) -> np.ndarray:
        """The values behind the arbiter's residues, divided by ``scale``."""
        if not isinstance(arr, np.ndarray) or arr.shape[:-1] != secret.wire_shape:
            raise RunFailed(f"the arbiter's residues do not have the shape {secret.wire_shape}")
        try:
            residues = residues_from_array(self.public_key, arr)
            return secret.unmask(residues) / scale
        except InvalidCiphertext:
            raise RunFailed("the arbiter returned invalid residues") from None
        except PaillierError as exc:
            raise RunFailed(f"a decrypted value overflowed: {exc}") from None


def decrypt_masked(
    private_key: PrivateKey, arr: object, parallel: ParallelPaillier | None = None
) -> np.ndarray:
    """The arbiter's one operation: the residues of masked ciphertexts, as a uint8 tensor;
    :class:`~consortium.privacy.paillier.InvalidCiphertext` for anything else."""
    public = private_key.public_key
    decrypt = decrypt_residues if parallel is None else parallel.decrypt_residues
    encrypted = ciphertexts_from_array(public, arr, exponent=0)
    return residues_to_array(public, decrypt(private_key, encrypted))
