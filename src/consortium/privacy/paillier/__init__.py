"""Paillier encryption for the vertical protocols: fast, vectorised, with safe defaults.

The safe tier, exported here::

    keys = PaillierKeypair.generate()                # 2048 bits; the arbiter keeps it
    enc_d = encrypt(keys.public_key, residuals)      # [[d]], 32 fractional bits
    grad = enc_d @ X                                 # X^T [[d]] by multi-exponentiation
    masked, secret = mask(grad)                      # before the arbiter sees it
    wire = ciphertexts_to_array(masked)              # uint8 tensor, re-randomised
    ...
    plain = decrypt_residues(keys.private_key, ...)  # arbiter: uniform residues only
    gradient = secret.unmask(plain)                  # member: the true values

with a fixed-point :class:`Encoding` (explicit precision, overflow detection),
:class:`ObfuscatorPool` (encryption at the cost of one multiplication), :class:`Packing`
(several values per ciphertext for sums), :class:`ParallelPaillier` (worker processes)
and strict serialisation to numeric tensors. Keys only hold key material; the recipes
above encrypt and decrypt.

The raw tier, for code that knows what it does, lives in the modules
:mod:`~consortium.privacy.paillier.primitives` (integer encryption, decryption, homomorphic
operations, prime generation) and :mod:`~consortium.privacy.paillier.multiexp`
(multi-exponentiation); it neither encodes nor validates.

Big-integer arithmetic uses gmpy2, imported on first use: install the ``paillier`` extra
(``pip install 'consortium[paillier]'``). References: Paillier, EUROCRYPT 1999; Damgård and
Jurik, PKC 2001; Pippenger, SIAM J. Comput. 1980 (see each module).
"""

from __future__ import annotations

from consortium.privacy.paillier.arrays import (
    EncryptedArray,
    decrypt,
    decrypt_encoded,
    decrypt_residues,
    encrypt,
    matvec,
    rmatvec,
)
from consortium.privacy.paillier.encoding import Encoding
from consortium.privacy.paillier.errors import (
    EncodingOverflow,
    InvalidCiphertext,
    InvalidPublicKey,
    PackingOverflow,
    PaillierError,
)
from consortium.privacy.paillier.keys import (
    DEFAULT_KEY_BITS,
    MIN_KEY_BITS,
    PaillierKeypair,
    PrivateKey,
    PublicKey,
)
from consortium.privacy.paillier.masking import Mask, mask
from consortium.privacy.paillier.obfuscators import ObfuscatorPool
from consortium.privacy.paillier.packing import PackedArray, Packing, decrypt_packed, encrypt_packed
from consortium.privacy.paillier.pool import ParallelPaillier
from consortium.privacy.paillier.serial import (
    ciphertexts_from_array,
    ciphertexts_to_array,
    packed_from_array,
    packed_to_array,
    public_key_from_array,
    public_key_to_array,
    residues_from_array,
    residues_to_array,
)

__all__ = [
    "DEFAULT_KEY_BITS",
    "MIN_KEY_BITS",
    "Encoding",
    "EncodingOverflow",
    "EncryptedArray",
    "InvalidCiphertext",
    "InvalidPublicKey",
    "Mask",
    "ObfuscatorPool",
    "PackedArray",
    "Packing",
    "PackingOverflow",
    "PaillierError",
    "PaillierKeypair",
    "ParallelPaillier",
    "PrivateKey",
    "PublicKey",
    "ciphertexts_from_array",
    "ciphertexts_to_array",
    "decrypt",
    "decrypt_encoded",
    "decrypt_packed",
    "decrypt_residues",
    "encrypt",
    "encrypt_packed",
    "mask",
    "matvec",
    "packed_from_array",
    "packed_to_array",
    "public_key_from_array",
    "public_key_to_array",
    "residues_from_array",
    "residues_to_array",
    "rmatvec",
]
