"""What each role can see, mode by mode: the table the privacy audit test checks.

Every message a party receives is listed here by its kind and tensors, with what it reveals.
The runtime's own messages (``party.join``, ``run.stop``, ...) carry no data. The roles are
*semi-honest*: they follow the protocol and try to learn what they can from what they get.

Honest mode
-----------

========  =====================  =========================================================
receiver  kind                   what it reveals
========  =====================  =========================================================
member    ``vfl.psi.offer``      the master's ids under a key the member does not know: the
                                 size of the master's id set, nothing else
member    ``vfl.align``          which of its own records are in the intersection (and so
                                 the intersection), and how many of them train
member    ``vfl.forward``,       aligned positions of the batch: the batch schedule
          ``vfl.predict``
member    ``vfl.backward``       **label-derived**: ``(p - y) / B`` for linear models, from
                                 which the member reads every training label of the batch
                                 (at zero weights, ``p`` is constant); for split networks the
                                 gradient w.r.t. its output, which leaks labels too
member    ``vfl.exact.residual`` **label-derived**: the residual ``r = y - Xw`` (at the first
                                 step, ``r = y``: the training labels themselves)
member    ``vfl.exact.direction``  one scalar, ``beta``
master    ``vfl.psi.reply``      the member's ids under its key (its set size) and its own
                                 ids under both keys: which of the master's ids the member
                                 holds (with several members: each member's overlap with
                                 the master, a superset of the final intersection)
master    ``vfl.ready``          how many columns the member holds
master    ``vfl.forward.reply``, the member's partial output ``X_p W_p`` (or its bottom's
          ``vfl.predict.reply``  output) for the named rows, never its raw columns; over many
                                 steps these outputs span the column space of ``X_p``, so a
                                 curious master learns ``X_p`` up to an unknown invertible
                                 mix of its columns
master    ``vfl.exact.*.reply``  ``X_p p_p`` (a partial output) and squared norms
arbiter   (nothing)              honest mode sends the arbiter nothing
========  =====================  =========================================================

No party ever receives another's raw columns, its model part, or an id outside the
intersection in a form it can read. What honest mode does not protect: labels (members read
them from the gradients) and members' partial outputs (the master sees them). The arbitered
mode (Paillier, the arbiter holding the key) encrypts both.

Arbitered mode
--------------

The alignment, ``vfl.forward``, ``vfl.predict``, ``vfl.finish`` and the runtime's messages
are as in honest mode; every number below travels as Paillier ciphertexts (``enc``, uint8)
or as residues masked with a uniform value in ``Z_n`` that only the requester knows.

========  ==========================  ====================================================
receiver  kind                        what it reveals
========  ==========================  ====================================================
arbiter   ``vfl.he.keys``             the key size
arbiter   ``vfl.he.decrypt``          ciphertexts of ``value + mask`` (several values
                                      packed to one, each packed value with its own mask):
                                      decrypted, uniform residues, independent of any
                                      gradient or output; their count, which the
                                      packing's public layout fixes from the job, the key,
                                      the sender's columns and the rows predicted (the
                                      number of requests shows the batches per epoch)
member    ``vfl.he.public_key``       the public key
member    ``vfl.he.residual``         ``[[s d]]``: ciphertexts, re-randomised by the master,
                                      which the member cannot read; ``s`` (batch size and
                                      link, known anyway) and a bound on ``|s d|`` computed
                                      from the protocol's public limits (the number of
                                      parties and settings, no value)
member    ``vfl.he.decrypt.reply``    **label-derived**: once its own mask is removed, the
                                      gradient of its own weights ``X_p^T d``, which it
                                      needs to step: a sum over the batch's rows, never a
                                      per-row value. A batch always has more rows than the
                                      member has columns, so it cannot solve for the rows'
                                      residuals (the master enforces this)
master    ``vfl.he.public_key``       the public key
master    ``vfl.he.forward.reply``    a member's ``[[X_p W_p]]``: ciphertexts
master    ``vfl.he.predict.reply``    a member's ``[[X_p W_p]]`` for the rows to predict
master    ``vfl.he.decrypt.reply``    once its mask is removed: its own gradient
                                      ``[X_0 1]^T d`` in training; in prediction the
                                      outputs ``z`` of the rows it predicts for, a sum over
                                      the parties (with one member and no columns of its
                                      own, that member's output ``X_1 W_1`` for those rows)
master    ``vfl.he.stepped``          that the member has stepped its weights
========  ==========================  ====================================================

The arbiter receives no plaintext gradient, output or label; members receive nothing
derived from labels in the clear except their own weights' gradient, aggregated over a batch;
the master receives no member's columns and no member's output for a training row. The
parties are semi-honest and do not collude: the arbiter holds the key to every ciphertext,
so with a member it could decrypt ``[[s d]]`` (per row and label-derived), and with the
master the members' outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from consortium.vertical.messages import Kind

__all__ = ["VISIBILITY", "Visibility"]


@dataclass(frozen=True, slots=True)
class Visibility:
    """One kind of message a role receives, its tensors, and whether they derive from the
    labels."""

    role: str
    kind: str
    tensors: frozenset[str]
    label_derived: bool = False
    encrypted: frozenset[str] = frozenset()  # tensors that are Paillier ciphertexts
    masked: frozenset[str] = frozenset()  # residues of values plus the receiver's own mask


def _see(
    role: str,
    kind: str,
    *tensors: str,
    labels: bool = False,
    encrypted: tuple[str, ...] = (),
    masked: tuple[str, ...] = (),
) -> Visibility:
    return Visibility(
        role=role,
        kind=kind,
        tensors=frozenset([*tensors, *encrypted, *masked]),
        label_derived=labels,
        encrypted=frozenset(encrypted),
        masked=frozenset(masked),
    )


_ALIGNMENT = (
    _see("member", Kind.PSI_OFFER, "points"),
    _see("member", Kind.ALIGN, "positions"),
    _see("member", Kind.FORWARD, "rows"),
    _see("member", Kind.PREDICT, "rows"),
    _see("member", Kind.FINISH),
    _see("master", Kind.PSI_REPLY, "ids", "points"),
    _see("master", Kind.READY),
    _see("master", Kind.FINISH_REPLY),
)


VISIBILITY: dict[str, tuple[Visibility, ...]] = {
    "honest": (
        *_ALIGNMENT,
        _see("member", Kind.BACKWARD, "grad", labels=True),
        _see("member", Kind.EXACT_RESIDUAL, "alpha", "r", labels=True),
        _see("member", Kind.EXACT_DIRECTION, "beta"),
        _see("master", Kind.FORWARD_REPLY, "out"),
        _see("master", Kind.PREDICT_REPLY, "out"),
        _see("master", Kind.EXACT_RESIDUAL_REPLY, "gamma"),
        _see("master", Kind.EXACT_DIRECTION_REPLY, "q", "penalty"),
    ),
    "arbitered": (
        *_ALIGNMENT,
        _see("arbiter", Kind.KEYS),
        _see("arbiter", Kind.DECRYPT, encrypted=("enc",)),
        _see("member", Kind.PUBLIC_KEY, "n"),
        _see("member", Kind.RESIDUAL, encrypted=("enc",)),
        _see("member", Kind.DECRYPT_REPLY, masked=("residues",), labels=True),
        _see("master", Kind.PUBLIC_KEY, "n"),
        _see("master", Kind.HE_FORWARD_REPLY, encrypted=("enc",)),
        _see("master", Kind.HE_PREDICT_REPLY, encrypted=("enc",)),
        _see("master", Kind.DECRYPT_REPLY, masked=("residues",)),
        _see("master", Kind.STEPPED),
    ),
}
"""Mode -> every (role, kind, tensors) a party of that role may receive."""
