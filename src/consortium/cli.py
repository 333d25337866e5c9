"""The ``consortium`` command: run, validate, list, party, certs, report, predict.

Exit codes: 0 success; 1 the run failed (the message names the parties); 2 bad input (the
message names the file and the field); 130 interrupted (SIGINT, Ctrl-C) and 143 terminated
(SIGTERM), each after the command has stopped what it started.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from consortium.errors import ConfigError, ConsortiumError

__all__ = ["Terminated", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED, EXIT_TERMINATED = 128 + signal.SIGINT, 128 + signal.SIGTERM  # the shell's


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised on the main thread the way SIGINT raises ``KeyboardInterrupt``, so that
    every ``finally`` runs (children stopped, temporary keys removed) before the exit."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated("stopped by SIGTERM")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="consortium", description="Federated learning and analytics."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("--version", action="version", version=f"consortium {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a job")
    run.add_argument("job", type=Path)
    run.add_argument("--launcher", help="inproc (default) or processes")
    run.add_argument("--out", type=Path, help="run directory (default runs/<job>/<run id>)")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a job setting, e.g. algorithm.rounds=5",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar or table")
    run.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="go on with the run in RUN_DIR from its last checkpoint (the same job and --set)",
    )

    validate = sub.add_parser("validate", help="check a job file without running it")
    validate.add_argument("job", type=Path)
    validate.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE"
    )

    sub.add_parser("list", help="show the registered plugins")

    party = sub.add_parser("party", help="run one party of a job (multi-host runs)")
    party.add_argument("--job", type=Path, required=True)
    party.add_argument(
        "--base-dir", type=Path, help="where relative paths in the job start (default: its folder)"
    )
    party.add_argument("--party", required=True)
    party.add_argument("--connect", metavar="HOST:PORT", help="the hub's address (non-hub parties)")
    party.add_argument("--listen", metavar="HOST:PORT", help="where the hub listens")
    party.add_argument("--out", type=Path, help="run directory (the hub party)")
    party.add_argument(
        "--resume", action="store_true", help="go on from the checkpoint in --out (the hub party)"
    )
    party.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    party.add_argument("--supervisor", type=int, help=argparse.SUPPRESS)  # the launcher's pid
    party.add_argument("--launched-at", type=float, help=argparse.SUPPRESS)  # its time.time()
    party.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    tls = party.add_argument_group("mutual TLS (default: the files runtime.tls names)")
    tls.add_argument("--tls-ca", type=Path, metavar="FILE", help="the federation's CA certificate")
    tls.add_argument("--tls-cert", type=Path, metavar="FILE", help="this party's certificate")
    tls.add_argument("--tls-key", type=Path, metavar="FILE", help="this party's private key")
    tls.add_argument(
        "--insecure", action="store_true", help="plain-text gRPC when no certificates are given"
    )

    predict = sub.add_parser("predict", help="predict rows with the model a run saved")
    predict.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run's directory")
    predict.add_argument("--data", type=Path, required=True, help="rows: a CSV file or .npz")
    predict.add_argument("--out", type=Path, help="write the predictions here (CSV)")
    predict.add_argument("--label", help="the CSV column holding the labels, to score them")

    report = sub.add_parser("report", help="draw a run's curves.png again from its metrics")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run's directory")

    certs = sub.add_parser("certs", help="make the federation's CA and party certificates")
    steps = certs.add_subparsers(dest="step", required=True)
    init = steps.add_parser("init", help="create the federation's CA: DIR/ca.crt and DIR/ca.key")
    init.add_argument("--dir", type=Path, required=True, help="where the CA lives (made 0700)")
    init.add_argument("--name", default="Consortium federation CA", help="the CA's common name")
    init.add_argument("--days", type=_positive, default=3650, help="validity (default 3650)")
    issue = steps.add_parser("issue", help="issue NAME.crt and NAME.key, signed by the CA")
    issue.add_argument("name", help="the party's name, as the job's topology names it")
    issue.add_argument("--dir", type=Path, required=True, help="where the CA lives")
    issue.add_argument("--out", type=Path, help="where to write the party's files (default DIR)")
    issue.add_argument("--days", type=_positive, default=365, help="validity (default 365)")
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("consortium")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "(not installed)"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive whole number")
    return value


def _cmd_run(args: argparse.Namespace) -> int:
    from consortium.jobs import load_job, run

    job = load_job(args.job, args.overrides)
    if args.resume is not None and args.out is not None and args.out != args.resume:
        raise ConfigError("--resume names the run directory: leave --out out")
    out, resume = (args.resume, True) if args.resume is not None else (args.out, False)
    result = run(job, launcher=args.launcher, out=out, quiet=args.quiet, resume=resume)
    if not result.ok:
        print(f"consortium: run failed: {result.error}", file=sys.stderr)
        print(f"consortium: partial results in {result.run_dir}", file=sys.stderr)
        return EXIT_FAILED
    if result.dropouts:
        names = ", ".join(f"{p} ({r})" for p, r in sorted(result.dropouts.items()))
        print(f"consortium: completed with dropouts: {names}", file=sys.stderr)
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    from consortium.jobs import bind_data, load_job

    job = load_job(args.job, args.overrides)
    bind_data(job)  # every party's data, as a run binds it: files, columns, row counts
    roles = ", ".join(
        f"{r} x{len(job.topology.with_role(r))}"
        for r in dict.fromkeys(p.role for p in job.topology.parties)
    )
    print(f"{args.job}: valid ({job.protocol}; {roles}; hash {job.job_hash[:12]})")
    return EXIT_OK


def _cmd_list(args: argparse.Namespace) -> int:
    import consortium.jobs
    import consortium.ml
    import consortium.tracking  # noqa: F401  (each fills its registries on import)
    from consortium.registry import all_registries

    for kind, registry in all_registries().items():
        print(f"{kind}: {', '.join(registry.names())}")
    return EXIT_OK


def _cmd_party(args: argparse.Namespace) -> int:
    from consortium.jobs import load_job, run_party
    from consortium.jobs.party import die_with

    if args.supervisor is not None:
        die_with(args.supervisor)

    tls = None
    given = [args.tls_ca, args.tls_cert, args.tls_key]
    if any(given):
        if not all(given):
            raise ConfigError("give --tls-ca, --tls-cert and --tls-key together")
        from consortium.security import TlsFiles

        tls = TlsFiles(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key)
    job = load_job(args.job, args.overrides, base_dir=args.base_dir)
    result = run_party(
        job,
        args.party,
        connect=args.connect,
        listen=args.listen,
        ready_fd=args.ready_fd,
        run_dir=args.out,
        tls=tls,
        insecure=args.insecure,
        resume=args.resume,
        launched_at=args.launched_at,
    )
    if result is not None and not result.ok:
        if args.supervisor is None:  # a launcher reports the run's result itself
            print(f"consortium: run failed: {result.error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _cmd_certs(args: argparse.Namespace) -> int:
    from consortium.security import Authority

    if args.step == "init":
        files = Authority.create(args.name, days=args.days).save(args.dir)
        print(f"wrote {files.ca} (give a copy to every party)")
        print(f"wrote {files.key} (the CA's private key: keep it here, never share it)")
        return EXIT_OK
    out = args.out or args.dir
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = Authority.load(args.dir).issue(args.name, days=args.days).save(out, args.name)
    print(f"wrote {files.cert} and {files.key} (the key only for party {args.name!r}: 0600)")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from consortium.tracking import draw_report

    path = draw_report(args.run_dir)
    if path is None:
        print(
            f"consortium: {args.run_dir / 'metrics.jsonl'} holds no metric to draw "
            "(an analytics run records none); no curves.png written",
            file=sys.stderr,
        )
        return EXIT_OK
    print(path)
    return EXIT_OK


def _cmd_predict(args: argparse.Namespace) -> int:
    from consortium.jobs import predict
    from consortium.jobs.predict import write_predictions

    predictions = predict(args.run_dir, args.data, label=args.label)
    if args.out is not None:
        write_predictions(args.out, predictions)
        print(f"wrote {len(predictions.values)} predictions to {args.out}")
    for name, value in predictions.metrics.items():
        print(f"{name}: {value:.6g}")
    return EXIT_OK


_COMMANDS = {
    "run": _cmd_run,
    "validate": _cmd_validate,
    "list": _cmd_list,
    "party": _cmd_party,
    "certs": _cmd_certs,
    "report": _cmd_report,
    "predict": _cmd_predict,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    # MLflow configures its own loggers from this variable when it is first imported.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", logging.getLevelName(level))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if on_main else None
    try:
        return _COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"consortium: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConsortiumError as exc:
        print(f"consortium: run failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Terminated:
        print("consortium: terminated (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("consortium: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
