"""Named seed streams (sagekit.seeds): no two streams share a seed, for any parameters a
study's declaration accepts."""

import random

import pytest

from sagekit.seeds import BASE_BITS, INDEX_BITS, STREAMS, seed_of, seeds, stream_of
from sagekit.studies import STUDIES
from sagekit.studies.parameters import Int, ListOf


def _span(stream):
    """The smallest and largest seed a stream can give (seed_of grows with both inputs)."""
    return seed_of(stream, 0, 0), seed_of(stream, 2**BASE_BITS - 1, 2**INDEX_BITS - 1)


def test_streams_never_share_a_seed():
    spans = sorted(_span(s) for s in STREAMS)
    assert all(hi < next_lo for (_, hi), (next_lo, _) in zip(spans, spans[1:]))
    assert spans[-1][1] < 2**63  # SQLite's and pandas' signed 64-bit integers
    rng = random.Random(0)
    for _ in range(2000):
        s = rng.choice(list(STREAMS))
        assert stream_of(seed_of(s, rng.randrange(2**BASE_BITS), rng.randrange(2**INDEX_BITS))) == s


def test_the_images_stream_keeps_the_seeds_studies_always_drew():
    assert seeds("images", 7, 3) == [7, 8, 9]


def test_out_of_range_draws_are_refused():
    with pytest.raises(ValueError):
        seed_of("train", 0, 2**INDEX_BITS)
    with pytest.raises(ValueError):
        seed_of("train", 2**BASE_BITS, 0)
    with pytest.raises(KeyError, match="unknown seed stream"):
        seed_of("fresh", 0, 0)


def _largest(study):
    """Every count parameter at the largest value its kind accepts."""
    params = dict(STUDIES[study].schema.defaults)
    for name, p in STUDIES[study].schema.params.items():
        if isinstance(p.rule, Int):
            params[name] = p.rule.hi
        elif isinstance(p.rule, ListOf) and isinstance(p.rule.item, Int):
            params[name] = [p.rule.item.hi]
    return params


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_a_study_draws_within_its_streams_for_any_accepted_parameters(study):
    schema = STUDIES[study].schema
    assert set(schema.streams) <= set(STREAMS) and schema.streams
    big = _largest(study)
    assert schema.params["seed"].rule.hi < 2**BASE_BITS
    for stream, count in schema.streams.items():
        assert 1 <= count(big) <= 2**INDEX_BITS, (stream, count(big))


def test_the_prompt_search_never_tests_on_a_seed_it_optimised_on():
    """Issue 32's collision: seed 101, 10 eval seeds and a second word once trained on 10 110."""
    from sagekit.studies.prompt_failures import PromptSearchConfig, _eval_seeds, _train_seeds

    for seed, train, evals in [(101, 1, 10), (0, 10_000, 10_000), (2**32 - 1, 7, 3)]:
        cfg = PromptSearchConfig(train_seeds=train, eval_seeds=evals)
        trained = {s for w in range(32) for s in _train_seeds(cfg, seed, w)}
        assert len(trained) == 32 * train and not trained & set(_eval_seeds(cfg, seed))
