"""``consortium certs`` and the TLS flags of ``consortium party``, from real subprocesses."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
FLAGSHIP = ROOT / "examples" / "hfl_digits.yaml"


def consortium(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "consortium", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=False,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def small_job(tmp_path: Path, **runtime: object) -> Path:
    job = yaml.safe_load(FLAGSHIP.read_text())
    job["topology"]["roles"]["trainer"]["count"] = 2
    job["algorithm"]["rounds"] = 2
    job["tracking"] = {"console": False, "mlflow": {"enabled": False}}
    if runtime:
        job["runtime"] = runtime
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    folder = tmp_path / "certs"
    proc = consortium("certs", "init", "--dir", str(folder))
    assert proc.returncode == 0, proc.stderr
    for name in ("aggregator", "trainer-0", "trainer-1"):
        proc = consortium("certs", "issue", name, "--dir", str(folder))
        assert proc.returncode == 0, proc.stderr
    return folder


def test_init_and_issue_write_owner_only_keys_and_print_no_secret(tmp_path, certs):
    assert mode(certs) == 0o700
    assert mode(certs / "ca.key") == mode(certs / "trainer-0.key") == 0o600
    assert mode(certs / "ca.crt") == mode(certs / "trainer-0.crt") == 0o644
    proc = consortium("certs", "issue", "trainer-2", "--dir", str(certs))
    assert proc.returncode == 0, proc.stderr
    assert "trainer-2.key" in proc.stdout and "PRIVATE" not in proc.stdout + proc.stderr


def test_issue_can_write_a_partys_files_elsewhere(tmp_path, certs):
    out = tmp_path / "for-trainer-5"
    proc = consortium("certs", "issue", "trainer-5", "--dir", str(certs), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["ca.crt", "trainer-5.crt", "trainer-5.key"]
    assert (out / "ca.crt").read_bytes() == (certs / "ca.crt").read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["init"], "already holds a CA"),
        (["issue", "trainer-0"], "already exists"),
        (["issue", "bad name"], "cannot name a party certificate"),
        (["issue", "x", "--days", "0"], "positive"),
    ],
)
def test_certs_refusals_exit_2_and_say_why(certs, args, message):
    proc = consortium("certs", *args, "--dir", str(certs))
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_issue_without_a_ca_exits_2(tmp_path):
    proc = consortium("certs", "issue", "trainer-0", "--dir", str(tmp_path / "nothing"))
    assert proc.returncode == 2 and "cannot read the CA certificate" in proc.stderr


def test_a_party_without_tls_material_refuses_to_start(tmp_path):
    proc = consortium(
        "party",
        "--job",
        str(small_job(tmp_path)),
        "--party",
        "trainer-0",
        "--connect",
        "127.0.0.1:9",
    )
    assert proc.returncode == 2
    assert "has no TLS material" in proc.stderr and "--tls-cert" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_tls_flags_go_together(tmp_path, certs):
    proc = consortium(
        "party",
        "--job",
        str(small_job(tmp_path)),
        "--party",
        "trainer-0",
        "--connect",
        "127.0.0.1:9",
        "--tls-ca",
        str(certs / "ca.crt"),
    )
    assert proc.returncode == 2 and "together" in proc.stderr


def test_a_party_given_someone_elses_certificate_refuses_to_start(tmp_path, certs):
    proc = consortium(
        "party", "--job", str(small_job(tmp_path)), "--party", "trainer-0",
        "--connect", "127.0.0.1:9",
        "--tls-ca", str(certs / "ca.crt"),
        "--tls-cert", str(certs / "trainer-1.crt"),
        "--tls-key", str(certs / "trainer-1.key"),
    )  # fmt: skip
    assert proc.returncode == 2 and "not for party 'trainer-0'" in proc.stderr


def test_the_job_file_checks_its_tls_section(tmp_path):
    job = small_job(tmp_path, tls={"insecure": True, "ca": "ca.crt"})
    proc = consortium("validate", str(job))
    assert proc.returncode == 2
    assert "runtime.tls" in proc.stderr and "insecure: true cannot be combined" in proc.stderr


@pytest.mark.slow
def test_parties_started_by_hand_run_a_job_over_mutual_tls(tmp_path, certs):
    job = small_job(tmp_path)
    with socket.socket() as sock:  # a free port for the hub (the README's 0.0.0.0:7800)
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

    def party(name: str, *args: str, folder: Path = certs) -> subprocess.Popen[str]:
        tls = ["--tls-ca", str(folder / "ca.crt")]
        tls += ["--tls-cert", str(folder / f"{name}.crt"), "--tls-key", str(folder / f"{name}.key")]
        cmd = [sys.executable, "-m", "consortium", "party", "--job", str(job), "--party", name]
        return subprocess.Popen(
            [*cmd, *tls, *args], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    rogue = tmp_path / "rogue"  # another federation's CA, and a trainer-0 of its own
    assert consortium("certs", "init", "--dir", str(rogue)).returncode == 0
    assert consortium("certs", "issue", "trainer-0", "--dir", str(rogue)).returncode == 0
    hub = party("aggregator", "--listen", address, "--out", str(tmp_path / "run"))
    impostor = party("trainer-0", "--connect", address, folder=rogue)
    _, err = impostor.communicate()
    assert impostor.returncode == 1 and "was refused by the hub" in err, err
    assert "CERTIFICATE_VERIFY_FAILED" in err
    trainers = [party(f"trainer-{i}", "--connect", address) for i in range(2)]
    outputs = [p.communicate() for p in [hub, *trainers]]
    assert [p.returncode for p in [hub, *trainers]] == [0, 0, 0], outputs
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds"] == 2
    assert not any("WITHOUT TLS" in err for _, err in outputs)
