"""Transport throughput: how fast large tensor messages move, next to what moving bytes costs.

Side by side, in one run: ``memcpy`` (``np.copyto`` into a preallocated array: the floor);
``codec`` (the wire alone: ``encode_parts``, joining the parts into one fresh buffer, the one
copy every receiver makes, and ``decode``); ``inproc``; ``grpc`` (real gRPC on loopback, hub
and spokes as threads of this process) and, with ``--processes``, ``grpc-proc`` (the spokes
in child processes). Each transport moves a float32 tensor spoke->hub (``s->h``), hub->spoke
(``h->s``) and spoke->hub->spoke (``s->h->s``, relayed by the hub; inproc has no hub in
between, so there it is spoke->spoke), timed end to end: from just before ``send`` until the
receiver's ``recv`` returned the decoded message, on ``time.monotonic`` (one clock for the
whole host, so a child's send stamp compares with the parent's receipt). Throughput is the
median of ``--repeat`` transfers (transports interleaved), in MB/s (10**6 bytes/s); every
received tensor is checked against what was sent, outside the timed span. Latency: 1 KiB
round trips hub->spoke->hub, p50 and p99 over ``--pings``. Run from the repository root::

    python bench/transport_throughput.py [--sizes 64 256 1024] [--huge] [--processes]
                                         [--repeat 3] [--pings 2000] [--out FILE]

``--huge`` adds a 2.25 GiB tensor (more than one gRPC message can hold, so only chunking
moves it); its run peaked at 12 GB resident (the gRPC readers keep a stream's last message
until the next one arrives), more with ``--processes``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from consortium.transport import Endpoint, GrpcHub, GrpcSpoke, InprocNetwork
from consortium.wire import Message, MetaValue, decode, encode_parts

QUICK_ARGS: list[str] = ["--sizes", "64", "--repeat", "3", "--pings", "500"]

HUB, S1, S2 = "hub", "spoke-1", "spoke-2"
ROSTER = [HUB, S1, S2]
ROUTES = {"s->h": (S1, HUB), "h->s": (HUB, S1), "s->h->s": (S1, S2)}
MIB = 2**20
HUGE_MIB = 2304  # 2.25 GiB: more than one gRPC message can carry
WAIT_S = 600.0  # the longest one step may take before the run is declared stuck
STRIDE = 4099  # every STRIDE-th float holds its own index; the receiver checks them all
PINNED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def payload(floats: int) -> np.ndarray:
    x = np.ones(floats, np.float32)
    marks = x[::STRIDE]
    marks[:] = np.arange(marks.size, dtype=np.float32)  # exact: far fewer than 2**24 marks
    return x


def check(x: np.ndarray, floats: int) -> None:
    marks = x[::STRIDE]
    if not (
        x.dtype == np.float32
        and x.shape == (floats,)
        and np.array_equal(marks, np.arange(marks.size, dtype=np.float32))
        and (floats < 2 or x[1] == 1.0)
    ):
        raise RuntimeError(f"the received tensor of {floats} floats is not the one sent")


Payloads = Callable[[int], np.ndarray]
"""Makes payloads: ``functools.lru_cache(maxsize=1)(payload)``, shared by a process's parties."""


def data(sender: str, receiver: str, x: np.ndarray) -> Message:
    meta = {"floats": int(x.size), "t0": time.monotonic()}
    return Message(kind="bench.data", sender=sender, receiver=receiver, meta=meta, tensors={"x": x})


def expect(ep: Endpoint, kind: str) -> Message:
    msg = ep.recv(timeout=WAIT_S)
    if msg.kind != kind:
        raise RuntimeError(f"{ep.party} expected {kind!r}, got {msg.kind!r} from {msg.sender!r}")
    return msg


def serve(ep: Endpoint, payloads: Payloads) -> None:
    """A spoke: carry out the hub's orders until told to stop."""
    while True:
        msg = ep.recv(timeout=WAIT_S)
        if msg.kind == "bench.send":
            x = payloads(int(msg.meta["floats"]))
            ep.send(data(ep.party, str(msg.meta["to"]), x))
        elif msg.kind == "bench.data":
            elapsed = time.monotonic() - float(msg.meta["t0"])
            check(msg.tensors["x"], int(msg.meta["floats"]))
            meta = {"elapsed": elapsed}
            ep.send(Message(kind="bench.ack", sender=ep.party, receiver=HUB, meta=meta))
        elif msg.kind == "bench.ping":
            ep.send(msg.reply("bench.pong", tensors=msg.tensors))
        elif msg.kind == "bench.stop":
            return
        else:
            raise RuntimeError(f"{ep.party} got an unexpected {msg.kind!r} from {msg.sender!r}")
        del msg  # drop a large message before waiting for the next one


def transfer(hub: Endpoint, route: str, floats: int, payloads: Payloads) -> float:
    """Move one tensor of ``floats`` float32 along ``route``; seconds, end to end."""
    src, dst = ROUTES[route]
    if src == HUB:
        hub.send(data(HUB, dst, payloads(floats)))
        return float(expect(hub, "bench.ack").meta["elapsed"])
    order: dict[str, MetaValue] = {"floats": floats, "to": dst}
    hub.send(Message(kind="bench.send", sender=HUB, receiver=src, meta=order))
    if dst != HUB:
        return float(expect(hub, "bench.ack").meta["elapsed"])
    msg = expect(hub, "bench.data")
    elapsed = time.monotonic() - float(msg.meta["t0"])
    check(msg.tensors["x"], floats)
    return elapsed


def ping(hub: Endpoint, count: int) -> list[float]:
    """Round-trip seconds of ``count`` 1 KiB pings, after ``count // 10`` unrecorded ones."""
    x = np.ones(256, np.float32)
    times = []
    for _ in range(count // 10 + count):
        t0 = time.perf_counter()
        hub.send(Message(kind="bench.ping", sender=HUB, receiver=S1, tensors={"x": x}))
        expect(hub, "bench.pong")
        times.append(time.perf_counter() - t0)
    return times[count // 10 :]


def stop(hub: Endpoint) -> None:
    for name in (S1, S2):
        with contextlib.suppress(Exception):  # already gone: its failure is reported
            hub.send(Message(kind="bench.stop", sender=HUB, receiver=name))


@contextlib.contextmanager
def serving(hub: Endpoint, spokes: list[Endpoint], payloads: Payloads) -> Iterator[Endpoint]:
    """Serve ``spokes`` in threads of this process; on exit stop them and close ``hub``."""

    def run(ep: Endpoint) -> None:
        try:
            serve(ep, payloads)
        finally:
            ep.close()  # the hub then hears PEER_LOST instead of waiting for a dead spoke

    threads = [threading.Thread(target=run, args=(ep,), daemon=True) for ep in spokes]
    for thread in threads:
        thread.start()
    try:
        yield hub
    finally:
        stop(hub)
        for thread in threads:
            thread.join(WAIT_S)
        hub.close()


def inproc(payloads: Payloads) -> contextlib.AbstractContextManager[Endpoint]:
    net = InprocNetwork()
    return serving(net.endpoint(HUB), [net.endpoint(S1), net.endpoint(S2)], payloads)


def grpc_threads(payloads: Payloads) -> contextlib.AbstractContextManager[Endpoint]:
    hub = GrpcHub(party=HUB, peers=ROSTER)
    try:
        spokes: list[Endpoint] = [
            GrpcSpoke(party=n, peers=ROSTER, hub=hub.address) for n in (S1, S2)
        ]
    except BaseException:
        hub.close()
        raise
    return serving(hub, spokes, payloads)


@contextlib.contextmanager
def grpc_processes(payloads: Payloads) -> Iterator[Endpoint]:
    hub = GrpcHub(party=HUB, peers=ROSTER)
    script = str(Path(__file__).resolve())
    env = {**os.environ, **PINNED}
    children = [
        subprocess.Popen([sys.executable, script, "--spoke", name, hub.address], env=env)
        for name in (S1, S2)
    ]
    try:
        hub.wait_for([S1, S2], timeout=60.0)  # a child that fails to start is reported soon
        yield hub
        stop(hub)
        for child in children:
            child.wait(WAIT_S)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(WAIT_S)
        hub.close()


TRANSPORTS = {"inproc": inproc, "grpc": grpc_threads, "grpc-proc": grpc_processes}


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    seconds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - t0)
    return seconds


def baselines(x: np.ndarray, repeat: int) -> dict[str, list[float]]:
    dst = np.empty_like(x)
    np.copyto(dst, x)  # fault the destination's pages in before timing
    copies = timed(functools.partial(np.copyto, dst, x), repeat)
    del dst
    msg = Message(kind="bench.data", sender=S1, receiver=HUB, tensors={"x": x})
    check(decode(b"".join(encode_parts(msg)[0])).tensors["x"], x.size)
    return {
        "memcpy": copies,
        "codec": timed(lambda: decode(b"".join(encode_parts(msg)[0])), repeat),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [*args.sizes, *([HUGE_MIB] if args.huge else [])]
    names = ["inproc", "grpc", *(["grpc-proc"] if args.processes else [])]
    payloads = functools.lru_cache(maxsize=1)(payload)
    rows: list[dict[str, object]] = []
    latency: list[dict[str, object]] = []

    def row(mib: int, path: str, seconds: list[float]) -> None:
        median = statistics.median(seconds)
        mb_s = mib * MIB / 1e6 / median
        rows.append({"size_mib": mib, "path": path, "seconds": seconds, "mb_s": mb_s})

    with contextlib.ExitStack() as stack:
        hubs = {name: stack.enter_context(TRANSPORTS[name](payloads)) for name in names}
        for hub in hubs.values():  # warm-up: 1 MiB on every path
            for route in ROUTES:
                transfer(hub, route, MIB // 4, payloads)
        for mib in sizes:
            floats = mib * MIB // 4
            for path, seconds in baselines(payloads(floats), args.repeat).items():
                row(mib, path, seconds)
            times: dict[str, list[float]] = {f"{n} {r}": [] for n in hubs for r in ROUTES}
            for _ in range(args.repeat):
                for name, hub in hubs.items():
                    for route in ROUTES:
                        times[f"{name} {route}"].append(transfer(hub, route, floats, payloads))
            for path, seconds in times.items():
                row(mib, path, seconds)
            print(f"measured {mib} MiB", file=sys.stderr, flush=True)
        payloads.cache_clear()
        for name, hub in hubs.items():
            rtt = np.array(ping(hub, args.pings)) * 1e6
            p50, p99 = np.percentile(rtt, [50, 99])
            latency.append({"transport": name, "pings": args.pings, "p50_us": p50, "p99_us": p99})
    return {
        "command": " ".join(
            [Path(sys.executable).name, os.path.relpath(sys.argv[0]), *sys.argv[1:]]
        ),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "versions": {"numpy": np.__version__, "grpcio": grpc.__version__},
        "repeat": args.repeat,
        "throughput": rows,
        "latency": latency,
    }


def markdown(result: dict[str, Any]) -> str:
    rows, lat = result["throughput"], result["latency"]
    paths = list(dict.fromkeys(r["path"] for r in rows))
    sizes = list(dict.fromkeys(r["size_mib"] for r in rows))
    mb_s = {(r["size_mib"], r["path"]): r["mb_s"] for r in rows}
    lines = [
        f"Throughput, MB/s (10^6 B/s), median of {result['repeat']}; `{result['command']}`",
        "",
        "| size | " + " | ".join(paths) + " |",
        "|---:|" + "---:|" * len(paths),
    ]
    for mib in sizes:
        cells = [f"{mb_s[mib, p]:,.0f}" for p in paths]
        lines.append(f"| {mib} MiB | " + " | ".join(cells) + " |")
    lines += ["", "Latency, 1 KiB round trip hub->spoke->hub", ""]
    lines += ["| transport | pings | p50 µs | p99 µs |", "|---|---:|---:|---:|"]
    for r in lat:
        lines.append(f"| {r['transport']} | {r['pings']} | {r['p50_us']:.0f} | {r['p99_us']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024], metavar="MIB")
    parser.add_argument("--huge", action="store_true", help=f"add {HUGE_MIB} MiB (~12 GB RAM)")
    parser.add_argument("--processes", action="store_true", help="add gRPC to child processes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pings", type=int, default=2000)
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    parser.add_argument("--spoke", nargs=2, metavar=("PARTY", "HUB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.spoke:  # a child process of --processes
        spoke = GrpcSpoke(party=args.spoke[0], peers=ROSTER, hub=args.spoke[1])
        try:
            serve(spoke, functools.lru_cache(maxsize=1)(payload))
        finally:
            spoke.close()
        return
    result = measure(args)
    print(markdown(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
