"""The job file is strict: every mistake is a ConfigError naming the file and the field."""

from __future__ import annotations

import pytest

from consortium.errors import ConfigError
from consortium.jobs import load_job, parse_job


def test_flagship_validates(flagship):
    job = load_job(flagship)
    assert job.protocol == "horizontal"
    assert job.topology.names()[:2] == ["aggregator", "trainer-0"]
    assert len(job.topology.with_role("trainer")) == 10
    assert job.algorithm.rounds == 20
    assert len(job.job_hash) == 64


def test_same_job_same_hash_and_overrides_change_it(flagship):
    assert load_job(flagship).job_hash == load_job(flagship).job_hash
    assert load_job(flagship, ["algorithm.rounds=3"]).job_hash != load_job(flagship).job_hash


def test_overrides_are_typed(flagship):
    job = load_job(
        flagship, ["algorithm.rounds=3", "algorithm.local.lr=0.5", "data.dataset.name=wine"]
    )
    assert job.algorithm.rounds == 3
    assert job.algorithm.local.lr == 0.5
    assert job.spec.data.dataset.name == "wine"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"algorithm__local__learning_rate": 0.1}, "algorithm.local.learning_rate: unknown key"),
        ({"algorithm__rounds": 0}, "algorithm.rounds: Input should be greater than 0"),
        ({"modle": {"name": "logreg"}}, "modle: unknown key"),
        (
            {"algorithm__strategy": {"name": "fedsgd"}},
            "algorithm.strategy: .*unknown strategy 'fedsgd'; choose one of: .*fedavg, fedavgm",
        ),
        (
            {"model": {"name": "resnet9000"}},
            "model.name: unknown model 'resnet9000'; choose one of: .*logreg",
        ),
        (
            {"data__dataset": {"name": "mnist_full"}},
            "data.dataset.name: unknown dataset 'mnist_full'; choose one of: .*digits",
        ),
        (
            {"runtime": {"launcher": "slurm"}},
            "runtime.launcher: unknown launcher 'slurm'; choose one of: inproc, processes",
        ),
        ({"algorithm__protocol": "diagonal"}, "algorithm.protocol: unknown protocol 'diagonal'"),
        (
            {"topology__roles": {"aggregator": {"count": 1}, "learner": {"count": 2}}},
            "'aggregator' and 'trainer'",
        ),
        ({"data__roles__trainer__partitioner": {"name": "zipf"}}, "unknown partitioner 'zipf'"),
        (
            {"plugins": ["no_such_module_xyz"]},
            "plugins: cannot import plugin module 'no_such_module_xyz'",
        ),
        ({"name": "has spaces"}, "name: String should match pattern"),
    ],
)
def test_mistakes_name_the_field(small_job, write_job, change, message):
    path = write_job(small_job(**change))
    with pytest.raises(ConfigError, match=message) as info:
        load_job(path)
    assert str(path) in str(info.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such job file"):
        load_job(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_job(bad)
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_job(["not", "a", "mapping"])


def test_an_empty_job_file_says_so_and_a_yaml_error_says_where(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=rf"^{empty}: the job file is empty$"):
        load_job(empty)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n  seed: [\n")
    with pytest.raises(ConfigError, match=rf"^{bad}:2:7: not valid YAML: ") as info:
        load_job(bad)
    assert "unicode string" not in str(info.value) and "\n" not in str(info.value)


def test_a_plugin_module_that_fails_on_import_is_named(small_job, write_job):
    path = write_job(small_job(plugins=["broken_plugin"]))
    (path.parent / "broken_plugin.py").write_text("raise RuntimeError('no licence file')\n")
    with pytest.raises(ConfigError) as info:
        load_job(path)
    message = str(info.value)
    assert message.startswith(f"{path}: plugins: plugin module 'broken_plugin' failed on import")
    assert "RuntimeError: no licence file" in message and "broken_plugin.py:1" in message


def test_a_random_selection_larger_than_the_trainers_is_refused(small_job, write_job):
    selection = {"name": "random", "args": {"count": 20}}
    path = write_job(small_job(algorithm__selection=selection))
    with pytest.raises(ConfigError, match="count: 20 parties asked for each round, but only"):
        load_job(path)


def test_bad_override_syntax(flagship):
    with pytest.raises(ConfigError, match="expected path.to.key=value"):
        load_job(flagship, ["algorithm.rounds"])


@pytest.mark.parametrize("section", ["model", "data"])
def test_the_horizontal_protocol_needs_data_and_a_model(small_job, section):
    job = small_job()
    del job[section]
    with pytest.raises(ConfigError, match=rf"{section}: the horizontal protocol needs"):
        parse_job(job)
