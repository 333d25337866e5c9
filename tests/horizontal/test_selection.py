import pytest

from consortium.errors import ConfigError
from consortium.horizontal import AllSelector, RandomSelector

PARTIES = [f"t{i}" for i in range(1000)]


def test_random_selection_is_seeded_by_seed_and_round():
    sel = RandomSelector(count=100)
    a = sel.select(3, PARTIES, seed=1)
    assert a == sel.select(3, PARTIES, seed=1)
    assert a != sel.select(4, PARTIES, seed=1)
    assert a != sel.select(3, PARTIES, seed=2)
    assert len(set(a)) == 100 and set(a) <= set(PARTIES)
    assert a == sorted(a, key=PARTIES.index)


def test_fraction_and_bounds():
    assert len(RandomSelector(fraction=0.1).select(1, PARTIES, seed=0)) == 100
    assert len(RandomSelector(count=50).select(1, PARTIES[:10], seed=0)) == 10
    assert AllSelector().select(1, PARTIES[:3], seed=0) == PARTIES[:3]


def test_over_many_rounds_everyone_gets_picked_about_equally():
    sel = RandomSelector(count=10)
    counts = dict.fromkeys(PARTIES[:100], 0)
    for rnd in range(1, 1001):
        for p in sel.select(rnd, PARTIES[:100], seed=5):
            counts[p] += 1
    assert min(counts.values()) > 60 and max(counts.values()) < 140  # expected 100 each


@pytest.mark.parametrize(
    "args", [{}, {"count": 1, "fraction": 0.5}, {"count": 0}, {"fraction": 1.5}]
)
def test_bad_settings(args):
    with pytest.raises(ConfigError):
        RandomSelector(**args)
