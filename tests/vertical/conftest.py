"""Centralised oracles for the vertical tests: the same records, aligned by id and pooled
in one place (which the protocol itself never does), trained by plain numpy. And the ways
in to the programs without a network: a recorder a state machine sends through, a loopback
that runs every party's program on the test's thread, and a tap on what a real run's
parties send."""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml

from consortium.errors import TransportTimeout
from consortium.jobs import bind_data, parse_job, run_inproc
from consortium.ml import fit_standardizer
from consortium.runtime import PartyContext, derive_rng, program_for
from consortium.vertical.exchange import Expect
from consortium.vertical.local import EPOCH_KEY, SPLIT_KEY, batches, split_records
from consortium.wire import Message

EXAMPLES = Path(__file__).parents[2] / "examples"


@dataclass
class Pooled:
    """The aligned records in the master's order (training rows first), columns in party
    order (master, then members), each block standardised on the training rows."""

    blocks: list[np.ndarray]
    y: np.ndarray
    n_train: int
    parties: list[str]  # the owner of each block

    @property
    def x(self) -> np.ndarray:
        return np.hstack(self.blocks)


def example(name: str, **changes: Any) -> dict[str, Any]:
    job = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    job["tracking"] = {"console": False, "mlflow": {"enabled": False}}
    for path, value in changes.items():
        node = job
        keys = path.split("__")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = copy.deepcopy(value)
    return job


def pooled(raw: dict[str, Any]) -> Pooled:
    job = parse_job(copy.deepcopy(raw))
    data = bind_data(job)
    master = job.topology.hub
    members = job.topology.with_role("member")
    held = set.intersection(*(set(data[m].ids) for m in members))
    mine = data[master]
    rows = np.array([i for i, rid in enumerate(mine.ids) if rid in held])
    rank = job.topology.party(master).rank
    order, n_train = split_records(
        len(rows), mine.test_fraction, derive_rng(job.spec.seed, SPLIT_KEY, rank)
    )
    ids = [mine.ids[i] for i in rows[order]]
    owners = ([master] if mine.x is not None else []) + members
    blocks = []
    for party in owners:
        index = {rid: i for i, rid in enumerate(data[party].ids)}
        x = data[party].x[[index[rid] for rid in ids]].astype(np.float64)
        mean, scale = fit_standardizer(x[:n_train])
        blocks.append((x - mean) / scale)
    assert mine.y is not None
    return Pooled(blocks=blocks, y=mine.y[rows[order]], n_train=n_train, parties=owners)


def schedule(raw: dict[str, Any], n_train: int, min_size: int = 1) -> list[list[np.ndarray]]:
    """The master's batches, epoch by epoch (a last batch under ``min_size`` rows joins the
    one before it)."""
    job = parse_job(copy.deepcopy(raw))
    settings = job.algorithm
    rank = job.topology.party(job.topology.hub).rank
    return [
        batches(
            n_train,
            settings.batch_size,
            derive_rng(job.spec.seed, EPOCH_KEY, epoch, rank) if settings.shuffle else None,
            min_size=min_size,
        )
        for epoch in range(1, settings.rounds + 1)
    ]


def central_gd(
    pool: Pooled, plan: list[list[np.ndarray]], *, outputs: int, link: str, lr: float, l2: float
) -> tuple[np.ndarray, np.ndarray]:
    """Minibatch gradient descent on the pooled data: weights (features, outputs), bias.

    ``link`` is ``identity``, ``logistic`` or ``softmax``, or ``taylor`` for the arbitered
    mode's linearised link: ``1/2 + z/4`` for one output, ``1/K + (z_k - mean z)/K`` for K.
    """
    x, y = pool.x, pool.y
    w = np.zeros((x.shape[1], outputs))
    b = np.zeros(outputs)
    for epoch in plan:
        for rows in epoch:
            z = x[rows] @ w + b
            if link == "identity":
                p, t = z, y[rows].reshape(-1, 1).astype(np.float64)
            elif link == "logistic":
                p, t = 1 / (1 + np.exp(-z)), y[rows].reshape(-1, 1).astype(np.float64)
            elif link == "taylor" and outputs == 1:
                p, t = 0.5 + z / 4, y[rows].reshape(-1, 1).astype(np.float64)
            elif link == "taylor":
                p = (1 + z - z.mean(axis=1, keepdims=True)) / outputs
                t = np.eye(outputs)[y[rows]]
            else:
                e = np.exp(z - z.max(axis=1, keepdims=True))
                p = e / e.sum(axis=1, keepdims=True)
                t = np.eye(outputs)[y[rows]]
            g = (p - t) / len(rows)
            w_step = x[rows].T @ g + l2 * w
            b -= lr * g.sum(axis=0)
            w -= lr * w_step
    return w, b


def load_parts(run_dir: Path, parts_dir: Path, pool: Pooled, master: str) -> dict[str, Any]:
    """The trained model as the parties saved it: the master's part from the run directory,
    each member's from its own file."""
    with np.load(run_dir / "model.npz") as m:
        master_part = {k: m[k] for k in m.files}
    weights = []
    for party in pool.parties:
        if party == master:
            weights.append(master_part["bottom.weight"])
        else:
            with np.load(parts_dir / f"{party}.npz") as f:
                weights.append(f["weight"])
    return {"weight": np.vstack(weights), "bias": master_part["top.bias"], "master": master_part}


# -- without a network ---------------------------------------------------------------------


def message(
    kind: str, *, sender: str = "master", receiver: str = "member-0", **fields: Any
) -> Message:
    """A message as a party would receive it (``round``, ``meta``, ``tensors`` by keyword)."""
    return Message(kind=kind, sender=sender, receiver=receiver, job="test", **fields)


class Recorder:
    """An outbox that keeps what a state machine sends, for the test to read."""

    def __init__(self, name: str = "member-0") -> None:
        self.name = name
        self.sent: list[Message] = []

    def send(self, kind, to, *, round=0, meta=None, tensors=None) -> None:
        self.sent.append(
            message(
                kind,
                sender=self.name,
                receiver=to,
                round=round,
                meta=meta or {},
                tensors=tensors or {},
            )
        )

    def reply(self, request: Message, kind: str, *, meta=None, tensors=None) -> None:
        self.send(kind, request.sender, round=request.round, meta=meta, tensors=tensors)


class Handed:
    """An endpoint that hands what its party sends to ``deliver`` (and never receives:
    the loopback gives its program each message itself)."""

    def __init__(self, party: str, deliver: Callable[[Message], None]) -> None:
        self.party = party
        self.deliver = deliver

    def send(self, msg: Message) -> None:
        self.deliver(msg)

    def recv(self, timeout: float | None = None) -> Message:
        raise TransportTimeout(f"{self.party} receives only from the loopback")

    def close(self) -> None:
        return None


class Loopback:
    """Every party of a job on the test's thread, no transport: the master's
    :class:`~consortium.vertical.exchange.Exchange`. A message is handed at once to the
    program it is for (a member's or the arbiter's ``handle``), in the order sent; messages
    for the master wait in :attr:`inbox` for :meth:`collect`. :attr:`sent` keeps every
    message, in order."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.job = parse_job(copy.deepcopy(raw))
        self.data = bind_data(self.job)
        topology = self.job.topology
        self.master = topology.hub
        self.round = 0
        self.sent: list[Message] = []
        self.inbox: list[Message] = []
        self.queue: deque[Message] = deque()
        self.busy = False
        self.contexts = {
            party.name: PartyContext(
                party=party,
                topology=topology,
                endpoint=Handed(party.name, self.deliver),
                job_id="loopback",
                seed=self.job.spec.seed,
                settings=self.job.algorithm,
                data=self.data[party.name],
            )
            for party in topology.parties
        }
        self.programs = {
            party.name: program_for("vertical", party.role)(self.contexts[party.name])
            for party in topology.parties
        }
        for name, program in self.programs.items():
            if name != self.master:
                program.start(self.contexts[name])
        self.inbox.clear()  # the joins

    def deliver(self, msg: Message) -> None:
        """Queue ``msg``; the outermost call hands out the queue, one message at a time
        (a program never gets a message while it handles another, as under the runtime)."""
        self.sent.append(msg)
        self.queue.append(msg)
        if self.busy:
            return
        self.busy = True
        try:
            while self.queue:
                msg = self.queue.popleft()
                if msg.receiver == self.master:
                    self.inbox.append(msg)
                else:
                    self.programs[msg.receiver].handle(self.contexts[msg.receiver], msg)
        finally:
            self.busy = False

    def conduct(self) -> Any:
        """The master's whole run (after the joins) through this loopback: its Outcome."""
        return self.programs[self.master].conduct(self.contexts[self.master], self)

    # the Exchange
    def new_round(self) -> int:
        self.round += 1
        return self.round

    def send(self, kind, to, *, round, meta=None, tensors=None) -> None:
        self.deliver(
            message(
                kind,
                sender=self.master,
                receiver=to,
                round=round,
                meta=meta or {},
                tensors=tensors or {},
            )
        )

    def collect(self, round: int, *expects: Expect) -> list[list[Any]]:
        out = []
        for expect in expects:
            got: dict[str, Any] = {}
            for msg in list(self.inbox):
                wanted = msg.kind == expect.kind and msg.round == round
                if wanted and msg.sender in expect.parties and msg.sender not in got:
                    got[msg.sender] = expect.read(msg)
                    self.inbox.remove(msg)
            missing = sorted(set(expect.parties) - set(got))
            assert not missing, f"round {round}: no {expect.kind} from {missing}"
            out.append([got[p] for p in expect.parties])
        return out


class Tap:
    """An endpoint that shows every message its party sends to ``on_send``, which returns
    the message to send (the same one, to record; another, to tamper)."""

    def __init__(self, inner: Any, on_send: Callable[[Message], Message]) -> None:
        self.inner = inner
        self.on_send = on_send

    @property
    def party(self) -> str:
        return str(self.inner.party)

    def send(self, msg: Message) -> None:
        self.inner.send(self.on_send(msg))

    def recv(self, timeout: float | None = None) -> Message:
        return self.inner.recv(timeout)

    def close(self) -> None:
        self.inner.close()


def tapped_run(raw: dict[str, Any], run_dir: Path, on_send: Callable[[Message], Message]) -> Any:
    """A real in-process run of ``raw`` whose parties' sends go through ``on_send``."""

    def tap(ctx: PartyContext) -> None:
        ctx.endpoint = Tap(ctx.endpoint, on_send)

    return run_inproc(parse_job(copy.deepcopy(raw)), run_dir, quiet=True, on_context=tap)


@pytest.fixture
def vfl() -> SimpleNamespace:
    return SimpleNamespace(
        example=example,
        pooled=pooled,
        schedule=schedule,
        central_gd=central_gd,
        load_parts=load_parts,
        message=message,
        Recorder=Recorder,
        Loopback=Loopback,
        tapped_run=tapped_run,
    )
