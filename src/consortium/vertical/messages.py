"""The vertical protocol's message kinds and stages.

Every exchange is started by the master, which names the rows it is about in each request
(no party relies on another stepping in lockstep):

=====================  ===============  =================================================
kind                   direction        tensors (meta)
=====================  ===============  =================================================
``vfl.psi.offer``      master → member  ``points``: the master's ids under a throw-away key
``vfl.psi.reply``      member → master  ``ids``: own ids under own key, secretly shuffled;
                                        ``points``: the offer under own key
``vfl.align``          master → member  ``positions``: the aligned records, as positions in
                                        the member's shuffled list (``train``: how many of
                                        them train, ``width``: the bottom's output width)
``vfl.ready``          member → master  (``features``: how many columns it holds)
``vfl.forward``        master → member  ``rows``: aligned positions of a training batch
``vfl.forward.reply``  member → master  ``out``: its bottom's output for those rows
``vfl.backward``       master → member  ``grad``: d loss / d that output
``vfl.predict``        master → member  ``rows``: aligned positions to predict for
``vfl.predict.reply``  member → master  ``out``: its bottom's output (no training)
``vfl.exact.*``        both ways        the exact solver's steps (see ``exact.py``)
``vfl.finish``         master → member  save your part; (``saved``) in the reply
=====================  ===============  =================================================

The arbitered mode (Paillier, :mod:`consortium.vertical.encrypted`) keeps the alignment,
``vfl.forward``, ``vfl.predict`` and ``vfl.finish``, and replaces what carries numbers:

===========================  =================  ==========================================
kind                         direction          tensors (meta)
===========================  =================  ==========================================
``vfl.he.keys``              master → arbiter   (``bits``): make the keys, send the public key
``vfl.he.public_key``        arbiter → master,  ``n``: the public key
                             arbiter → member
``vfl.he.forward.reply``     member → master    ``enc``: ``[[X_p W_p]]`` for the batch
                                                (``exponent``)
``vfl.he.predict.reply``     member → master    ``enc``: ``[[X_p W_p]]`` for the rows
``vfl.he.residual``          master → member    ``enc``: ``[[s d]]``, the scaled gradient of
                                                the loss w.r.t. the output (``exponent``,
                                                ``scale`` = s)
``vfl.he.decrypt``           master → arbiter,  ``enc``: ciphertexts of masked values
                             member → arbiter
``vfl.he.decrypt.reply``     arbiter → sender   ``residues``: their decryptions, still
                                                masked (or ``error`` in meta, no tensors)
``vfl.he.stepped``           member → master    the member has stepped its weights
===========================  =================  ==========================================
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ACCEPTS", "FROM_ARBITER", "ArbiterStage", "Kind", "MemberStage"]


class Kind(StrEnum):
    PSI_OFFER = "vfl.psi.offer"
    PSI_REPLY = "vfl.psi.reply"
    ALIGN = "vfl.align"
    READY = "vfl.ready"
    FORWARD = "vfl.forward"
    FORWARD_REPLY = "vfl.forward.reply"
    BACKWARD = "vfl.backward"
    PREDICT = "vfl.predict"
    PREDICT_REPLY = "vfl.predict.reply"
    EXACT_DIRECTION = "vfl.exact.direction"
    EXACT_DIRECTION_REPLY = "vfl.exact.direction.reply"
    EXACT_RESIDUAL = "vfl.exact.residual"
    EXACT_RESIDUAL_REPLY = "vfl.exact.residual.reply"
    FINISH = "vfl.finish"
    FINISH_REPLY = "vfl.finish.reply"
    KEYS = "vfl.he.keys"
    PUBLIC_KEY = "vfl.he.public_key"
    HE_FORWARD_REPLY = "vfl.he.forward.reply"
    HE_PREDICT_REPLY = "vfl.he.predict.reply"
    RESIDUAL = "vfl.he.residual"
    DECRYPT = "vfl.he.decrypt"
    DECRYPT_REPLY = "vfl.he.decrypt.reply"
    STEPPED = "vfl.he.stepped"


class MemberStage(StrEnum):
    """Where a member is; each stage accepts only the kinds :data:`ACCEPTS` lists for the
    job's mode."""

    OFFER = "waiting for the master's intersection offer"
    ALIGN = "waiting for the aligned records"
    KEY = "aligned, waiting for the arbiter's public key"
    READY = "aligned: training, predicting or solving"
    DECRYPTING = "waiting for the arbiter's masked decryption of its gradient"
    DONE = "part saved"


class ArbiterStage(StrEnum):
    """Where the arbiter is."""

    KEYS = "waiting for the master's request for keys"
    SERVING = "keys sent: decrypting masked values"


def _accepts(
    ready: frozenset[str],
    *,
    aligning: frozenset[str] = frozenset(),
    decrypting: frozenset[str] = frozenset(),
) -> dict[MemberStage, frozenset[str]]:
    """A mode's table: the alignment (``aligning``: kinds that may come at any time until
    the member is ready), then its own kinds in ``ready``, besides predicting and saving."""
    return {
        MemberStage.OFFER: frozenset({Kind.PSI_OFFER}) | aligning,
        MemberStage.ALIGN: frozenset({Kind.ALIGN}) | aligning,
        MemberStage.KEY: aligning,
        MemberStage.READY: ready | {Kind.PREDICT, Kind.FINISH},
        MemberStage.DECRYPTING: decrypting,
        MemberStage.DONE: frozenset(),
    }


ACCEPTS: dict[str, dict[MemberStage, frozenset[str]]] = {
    "plain": _accepts(frozenset({Kind.FORWARD, Kind.BACKWARD})),
    "exact": _accepts(frozenset({Kind.EXACT_DIRECTION, Kind.EXACT_RESIDUAL})),
    "arbitered": _accepts(
        frozenset({Kind.FORWARD, Kind.RESIDUAL}),
        aligning=frozenset({Kind.PUBLIC_KEY}),  # the arbiter's key may come before alignment
        decrypting=frozenset({Kind.DECRYPT_REPLY}),
    ),
}
"""Mode -> member stage -> the kinds it accepts (see :mod:`consortium.vertical.modes`)."""

FROM_ARBITER = frozenset({Kind.PUBLIC_KEY, Kind.DECRYPT_REPLY})
"""The kinds a member takes from the arbiter; it takes every other kind from the master."""
