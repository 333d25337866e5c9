"""The ``processes`` launcher speaks mutual TLS by default, with throw-away certificates that
never reach the run directory, the logs or MLflow; a job file may name its own."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
import yaml

from consortium.jobs import load_job, run
from consortium.security import Authority, PartyCredentials, TlsFiles

pytestmark = pytest.mark.slow

SECRET = b"PRIVATE KEY"  # in every PEM private key, whatever its algorithm


def make_certs(folder: Path, names: list[str]) -> Path:
    """What ``consortium certs init`` and ``issue`` make (tests/cli runs the commands)."""
    authority = Authority.create()
    authority.save(folder)
    for name in names:
        authority.issue(name).save(folder, name)
    return folder


def files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_the_search_would_find_a_key(tmp_path):  # the oracle of the test below can fail
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "x.log").write_bytes(b"...-----BEGIN PRIVATE KEY-----...")
    assert files_holding(tmp_path, SECRET) == [tmp_path / "deep" / "er" / "x.log"]


def test_keys_stay_out_of_the_run_directory_logs_and_mlflow(
    tmp_path, small_job, write_job, monkeypatch
):
    pytest.importorskip("mlflow")
    scratch = tmp_path / "scratch"  # the launcher's temporary area, made observable
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.chdir(tmp_path)  # MLflow's artifacts go beside the job, where we can look
    written: list[TlsFiles] = []
    save = PartyCredentials.save

    def spy(self: PartyCredentials, directory: Path, name: str) -> TlsFiles:
        files = save(self, directory, name)
        written.append(files)
        assert stat.S_IMODE(os.stat(files.key).st_mode) == 0o600
        return files

    monkeypatch.setattr(PartyCredentials, "save", spy)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    job = small_job(
        topology__roles__trainer__count=3,
        algorithm__rounds=2,
        tracking={"console": False, "mlflow": {"enabled": True, "tracking_uri": store}},
    )
    result = run(load_job(write_job(job)), launcher="processes", out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    assert sorted(f.key.name for f in written) == [
        "aggregator.key",
        "trainer-0.key",
        "trainer-1.key",
        "trainer-2.key",
    ]
    assert all(f.key.parent.parent == scratch for f in written)  # a temporary folder
    assert list(scratch.iterdir()) == []  # removed with the run
    assert (tmp_path / "mlflow.db").exists() and (tmp_path / "mlruns").is_dir()
    assert files_holding(tmp_path, SECRET) == []  # run directory, logs, MLflow, everything
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=store)
    (mrun,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert mrun.data.params["runtime.tls.insecure"] == "False"
    assert not any("KEY" in value for value in mrun.data.params.values())


def test_certificates_named_in_the_job_file_are_used(tmp_path, small_job, write_job, monkeypatch):
    make_certs(tmp_path / "certs", ["aggregator", "trainer-0", "trainer-1", "trainer-2"])
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    tls = {"ca": "certs/ca.crt", "cert": "certs/{party}.crt", "key": "certs/{party}.key"}
    job = small_job(topology__roles__trainer__count=3, algorithm__rounds=2, runtime__tls=tls)
    path = write_job(job)
    result = run(load_job(path), launcher="processes", out=tmp_path / "run", quiet=True)
    assert result.ok, result.error
    assert list(scratch.iterdir()) == []  # no throw-away certificates were made
    resolved = yaml.safe_load((tmp_path / "run" / "job.yaml").read_text())
    assert resolved["runtime"]["tls"]["cert"] == "certs/{party}.crt"  # paths, never contents
    assert files_holding(tmp_path / "run", SECRET) == []


def test_a_party_whose_certificate_names_someone_else_fails_the_run(tmp_path, small_job, write_job):
    certs = make_certs(tmp_path / "certs", ["aggregator", "trainer-0", "trainer-1"])
    (certs / "trainer-2.crt").symlink_to(certs / "trainer-1.crt")  # trainer-2 borrows a cert
    (certs / "trainer-2.key").symlink_to(certs / "trainer-1.key")
    tls = {"ca": "certs/ca.crt", "cert": "certs/{party}.crt", "key": "certs/{party}.key"}
    job = small_job(topology__roles__trainer__count=3, algorithm__rounds=2, runtime__tls=tls)
    result = run(load_job(write_job(job)), launcher="processes", out=tmp_path / "run", quiet=True)
    assert not result.ok
    assert "trainer-2" in result.error
    log = (tmp_path / "run" / "logs" / "trainer-2.log").read_text()
    assert "not for party 'trainer-2'" in log
