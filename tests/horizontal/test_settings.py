"""The strategy section of a job is checked on load: name and settings, each error naming
``algorithm.strategy.args.<field>``."""

from __future__ import annotations

import pytest

from consortium.cli import main
from consortium.errors import ConfigError
from consortium.horizontal import STRATEGIES, HorizontalSettings, StrategyRef
from consortium.jobs import load_job, parse_job

GOOD_ARGS = {
    "bulyan": {"byzantine": 0},
    "fedadagrad": {"server_lr": 0.5, "beta1": 0.5, "tau": 0.01},
    "fedadam": {"beta2": 0.9},
    "fedavg": {},
    "fedavgm": {"momentum": 0.0},
    "fedbuff": {"buffer_size": 2, "staleness": "constant"},
    "feddyn": {"alpha": 0.1, "num_clients": 5},
    "fedmedian": {},
    "fedprox": {"mu": 0.1},
    "fedtrimmedavg": {"beta": 0.2},
    "fedyogi": {"server_lr": 0.01},
    "krum": {"byzantine": 1},
    "multikrum": {"byzantine": 1, "keep": 2},
    "scaffold": {"server_lr": 0.5},
}


def test_every_built_in_strategy_is_listed_here():
    built_in = {
        name
        for name in STRATEGIES.names()
        if STRATEGIES.get(name).__module__.startswith("consortium.horizontal.")
    }
    assert built_in == set(GOOD_ARGS)


def test_the_default_strategy_is_fedavg():
    settings = HorizontalSettings(rounds=1)
    assert isinstance(settings.strategy, StrategyRef)
    assert settings.strategy.name == "fedavg" and settings.strategy.args == {}


@pytest.mark.parametrize("name", sorted(GOOD_ARGS))
def test_every_built_in_strategy_is_registered_and_validates(small_job, name):
    assert name in STRATEGIES
    # Five trainers, all required: enough for the robust rules' minimum (f = 1 needs 5).
    job = parse_job(
        small_job(
            topology__roles__trainer__count=5,
            algorithm__quorum=1.0,
            algorithm__strategy={"name": name, "args": GOOD_ARGS[name]},
        )
    )
    assert job.algorithm.strategy.name == name
    assert job.resolved["algorithm"]["strategy"] == {"name": name, "args": GOOD_ARGS[name]}


def test_every_error_is_listed_with_its_field(small_job):
    job = small_job(
        algorithm__strategy={"name": "fedadam", "args": {"beta1": 2, "tau": -1, "lr": 1}}
    )
    with pytest.raises(ConfigError) as info:
        parse_job(job)
    message = str(info.value)
    for field in ("beta1", "tau"):
        assert f"<dict>: algorithm.strategy.args.{field}: Input should be" in message
    assert "<dict>: algorithm.strategy.args.lr: unknown key (check its spelling)" in message


def test_fedavg_takes_no_settings(small_job):
    job = small_job(algorithm__strategy={"name": "fedavg", "args": {"momentum": 0.9}})
    with pytest.raises(ConfigError, match=r"algorithm\.strategy\.args\.momentum: unknown key"):
        parse_job(job)


def test_an_unknown_strategy_is_still_named(small_job):
    job = small_job(algorithm__strategy={"name": "fedsgd", "args": {"byzantine": 1}})
    with pytest.raises(ConfigError, match=r"algorithm\.strategy: .*unknown strategy 'fedsgd'"):
        parse_job(job)


def test_overrides_are_checked_too(flagship):
    with pytest.raises(ConfigError, match=r"algorithm\.strategy\.args\.momentum: "):
        load_job(
            flagship,
            ["algorithm.strategy.name=fedavgm", "algorithm.strategy.args.momentum=1.5"],
        )
    job = load_job(flagship, ["algorithm.strategy={name: krum, args: {byzantine: 2}}"])
    assert job.algorithm.strategy.args == {"byzantine": 2}


def test_consortium_validate_exits_2_naming_the_field(small_job, write_job, capsys):
    path = write_job(small_job(algorithm__strategy={"name": "multikrum", "args": {"keep": 3}}))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: algorithm.strategy.args.byzantine: Field required" in err
    assert "Traceback" not in err


def test_a_byzantine_bound_the_topology_cannot_meet_fails_on_load(small_job):
    from consortium.errors import ConfigError
    from consortium.jobs import parse_job

    # 4 trainers, quorum 0.8: a round may go on with 4 updates; Krum with f = 1 needs 5.
    job = small_job(algorithm__strategy={"name": "krum", "args": {"byzantine": 1}})
    with pytest.raises(
        ConfigError,
        match=r"'krum' needs 5 valid updates per round, but 'aggregator' may aggregate as few as 4",
    ):
        parse_job(job)
    job = small_job(
        topology__roles__trainer__count=10,
        algorithm__strategy={"name": "bulyan", "args": {"byzantine": 2}},
    )
    with pytest.raises(ConfigError, match=r"'bulyan' needs 11 valid updates"):
        parse_job(job)
    parse_job(
        small_job(
            topology__roles__trainer__count=7,
            algorithm__quorum=1.0,
            algorithm__strategy={"name": "krum", "args": {"byzantine": 2}},
        )
    )
