"""The arbiter's program: the key holder of the arbitered mode (an actor).

In honest mode the arbiter only joins and waits for the end; any protocol message is an
error. In arbitered mode (:mod:`consortium.vertical.encrypted`) it makes a Paillier keypair
of the job's size when the master asks, keeps the private key in memory (never written,
logged or sent), sends the public key to the master and every member, and decrypts masked
ciphertexts for them. It cannot tell a masked ciphertext from an unmasked one: against a
party that does not follow the protocol the scheme offers no protection (see
:mod:`consortium.vertical.visibility`).
"""

from __future__ import annotations

import logging

from consortium.errors import RunFailed
from consortium.privacy.paillier import (
    DEFAULT_KEY_BITS,
    InvalidCiphertext,
    PaillierKeypair,
    ParallelPaillier,
    public_key_to_array,
)
from consortium.runtime import JOIN, PROGRAMS, STOP, PartyContext
from consortium.transport import PEER_LOST
from consortium.vertical.encrypted import decrypt_masked
from consortium.vertical.messages import ArbiterStage, Kind
from consortium.vertical.settings import VerticalSettings
from consortium.wire import Message

__all__ = ["Arbiter"]

log = logging.getLogger(__name__)


class Arbiter:
    """Holds no data; in arbitered mode, holds the private key and decrypts masked values."""

    def __init__(self, ctx: PartyContext) -> None:
        self.settings: VerticalSettings = ctx.settings
        self.hub = ctx.topology.hub
        self.stage = ArbiterStage.KEYS
        self._keys: PaillierKeypair | None = None
        self._parallel: ParallelPaillier | None = None
        self._requesters: frozenset[str] = frozenset()

    def start(self, ctx: PartyContext) -> None:
        ctx.send(JOIN, self.hub)

    def handle(self, ctx: PartyContext, msg: Message) -> bool:
        if msg.kind == STOP or (msg.kind == PEER_LOST and msg.sender == self.hub):
            self._close()
            return False
        if msg.kind not in set(Kind):
            log.debug("the arbiter ignored %s from %s", msg.kind, msg.sender)
            return True
        if self.settings.mode != "arbitered":
            raise RunFailed(f"the arbiter got {msg.kind} from {msg.sender}; honest mode uses none")
        if msg.kind == Kind.KEYS and msg.sender == self.hub and self.stage == ArbiterStage.KEYS:
            self._make_keys(ctx, msg)
        elif msg.kind == Kind.DECRYPT and self.stage == ArbiterStage.SERVING:
            self._decrypt(ctx, msg)
        else:
            raise RunFailed(f"the arbiter got {msg.kind} from {msg.sender} while {self.stage}")
        return True

    def _make_keys(self, ctx: PartyContext, msg: Message) -> None:
        bits = self.settings.paillier.key_bits
        if msg.meta.get("bits") != bits:
            raise RunFailed(f"the master asked for {msg.meta.get('bits')!r}-bit keys, not {bits}")
        if bits < DEFAULT_KEY_BITS:
            log.warning("a %d-bit Paillier key is for tests only: use %d", bits, DEFAULT_KEY_BITS)
        self._keys = PaillierKeypair.generate(bits, allow_small=bits < DEFAULT_KEY_BITS)
        workers = self.settings.paillier.workers
        self._parallel = ParallelPaillier(workers=workers) if workers else None
        key = public_key_to_array(self._keys.public_key)
        members = ctx.peers("member")
        for member in members:
            ctx.send(Kind.PUBLIC_KEY, member, tensors={"n": key})
        ctx.reply(msg, Kind.PUBLIC_KEY, tensors={"n": key})
        self._requesters = frozenset([self.hub, *members])
        self.stage = ArbiterStage.SERVING
        log.info("arbiter: keys made (%s)", self._keys.public_key)

    def _decrypt(self, ctx: PartyContext, msg: Message) -> None:
        assert self._keys is not None
        if msg.sender not in self._requesters or set(msg.tensors) != {"enc"}:
            ctx.reply(msg, Kind.DECRYPT_REPLY, meta={"error": "not a decryption request"})
            return
        try:
            residues = decrypt_masked(self._keys.private_key, msg.tensors["enc"], self._parallel)
        except InvalidCiphertext:
            ctx.reply(msg, Kind.DECRYPT_REPLY, meta={"error": "invalid ciphertexts"})
            return
        ctx.reply(msg, Kind.DECRYPT_REPLY, tensors={"residues": residues})

    def _close(self) -> None:
        if self._parallel is not None:
            self._parallel.close()
            self._parallel = None
        self._keys = None


PROGRAMS.register("vertical/arbiter", Arbiter)
