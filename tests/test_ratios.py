"""What a mix asks of each source (``olmotrain.data.ratios``), at numbers worked out by hand:
natural and ratio mixes, the repetition each source is asked for and whether it fits, the ratio
checks and ``data.ratios``, and repetition-matched proxies."""

from __future__ import annotations

import pytest

from olmotrain.config.schema import DataSchema, SourceSchema
from olmotrain.data.ratios import RATIO_TOLERANCE, mix_plan, mixed_sources
from olmotrain.errors import UserError


def mix(*sources: tuple, **fields) -> DataSchema:
    """``mix(("web", 0.7), ("code", 0.3, {"max_repetition_ratio": 2}))``: a data config."""
    built = []
    for name, ratio, *extra in sources:
        built.append(SourceSchema(name=name, paths=[f"/data/{name}/*.npy"], ratio=ratio,
                                  **(extra[0] if extra else {})))  # fmt: skip
    return DataSchema(name="m", sources=built, **fields)


def test_a_natural_mix_takes_each_source_in_proportion_to_what_it_holds():
    web, code = mix_plan(mix(("web", None), ("code", None)), [3_000, 1_000], duration=2_000)
    assert web == {"ratio": 0.75, "requested_tokens": 1_500, "repetition": 0.5, "fits": True}
    assert code == {"ratio": 0.25, "requested_tokens": 500, "repetition": 0.5, "fits": True}


def test_a_natural_mix_longer_than_its_data_repeats_every_source_alike():
    web, code = mix_plan(mix(("web", None), ("code", None)), [3_000, 1_000], duration=8_000)
    assert web["repetition"] == code["repetition"] == 2.0
    assert web["fits"] is False and code["fits"] is False
    assert web["fit_problem"] == (
        "needs 6,000 tokens but has 3,000 usable, a repetition of 2.00x above its "
        "max_repetition_ratio 1; shorten the run (chinchilla_multiple or train.max_steps), add "
        "data, or raise its max_repetition_ratio"
    )


def test_a_natural_mix_of_unknown_sizes_asks_nothing_yet():
    plans = mix_plan(mix(("web", None), ("code", None)), [3_000, None], duration=2_000)
    assert (
        plans == [{"ratio": None, "requested_tokens": None, "repetition": None, "fits": None}] * 2
    )
    empty = mix_plan(mix(("web", None), ("code", None)), [0, 0], duration=2_000)
    assert [p["ratio"] for p in empty] == [None, None]


def test_a_ratio_mix_asks_duration_times_ratio_of_each():
    data = mix(("web", 0.7), ("code", 0.3, {"max_repetition_ratio": 4.0}))
    web, code = mix_plan(data, [10_000, 500], duration=5_000)
    assert web == {"ratio": 0.7, "requested_tokens": 3_500, "repetition": 0.35, "fits": True}
    # code: 1,500 of 500 tokens is 3x, within its max_repetition_ratio of 4
    assert code == {"ratio": 0.3, "requested_tokens": 1_500, "repetition": 3.0, "fits": True}
    # exactly at the limit still fits; just above does not
    at_limit = mix(("web", 0.7), ("code", 0.3, {"max_repetition_ratio": 3.0}))
    assert mix_plan(at_limit, [10_000, 500], duration=5_000)[1]["fits"] is True
    above = mix(("web", 0.7), ("code", 0.3, {"max_repetition_ratio": 2.99}))
    code = mix_plan(above, [10_000, 500], duration=5_000)[1]
    assert code["fits"] is False
    assert code["fit_problem"] == (
        "needs 1,500 tokens but has 500 usable, a repetition of 3.00x above its "
        "max_repetition_ratio 2.99; raise max_repetition_ratio, lower its ratio, or shorten the run"
    )


def test_max_source_fraction_limits_the_usable_tokens():
    data = mix(("web", 0.5, {"max_source_fraction": 0.25}), ("code", 0.5))
    web, code = mix_plan(data, [4_000, 4_000], duration=2_000)
    assert web["repetition"] == 1.0 and web["fits"] is True  # 1,000 of 1,000 usable
    assert code["repetition"] == 0.25
    unknown = mix_plan(data, [None, 4_000], duration=2_000)[0]
    assert unknown == {"ratio": 0.5, "requested_tokens": 1_000, "repetition": None, "fits": None}


def test_ratios_must_add_up_to_one_within_rounding():
    ok = mix(("a", 0.1), ("b", 0.2), ("c", 0.7 + RATIO_TOLERANCE / 2))
    assert len(mix_plan(ok, [100, 100, 100], 10)) == 3
    zero = mix(("a", 0.0), ("b", 1.0))  # a source at 0 is allowed: it is simply not read
    assert mix_plan(zero, [100, 100], 10)[0]["requested_tokens"] == 0
    with pytest.raises(UserError) as info:
        mix_plan(mix(("a", 0.501), ("b", 0.5)), [100, 100], 10)
    assert str(info.value) == (
        "data 'm': source ratios add up to 1.001 (a 0.501 + b 0.5), not 1; fix data.sources[].ratio"
    )
    with pytest.raises(UserError, match=r"add up to 0\.999998 "):
        mix_plan(mix(("a", 0.5), ("b", 0.5 - 2 * RATIO_TOLERANCE)), [100, 100], 10)


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        ((("a", 1.2), ("b", -0.2)), "data 'm': ratios must be >= 0 (got a=1.2, b=-0.2)"),
        ((("a", 1.0), ("b", None)), "data 'm': give every source a ratio, or none (natural mix); missing: b"),
        ((("a", 1.0, {"max_repetition_ratio": 0}),), "data source a: max_repetition_ratio=0 must be > 0"),
        ((("a", None, {"max_source_fraction": -1.0}),), "data source a: max_source_fraction=-1.0 must be > 0"),
    ],
)  # fmt: skip
def test_a_mix_that_cannot_mean_anything_is_one_line(sources, message):
    with pytest.raises(UserError) as info:
        mix_plan(mix(*sources), [100] * len(sources), 10)
    assert str(info.value) == message


def test_data_ratios_replace_the_sources_ratios_by_name():
    data = mix(("web", None), ("code", None), ratios={"code": 0.25, "web": 0.75})
    assert [(s.name, s.ratio) for s in mixed_sources(data)] == [("web", 0.75), ("code", 0.25)]
    assert [p["requested_tokens"] for p in mix_plan(data, [10_000, 10_000], 4_000)] == [
        3_000,
        1_000,
    ]
    integers = mix(("web", None), ("code", None), ratios={"code": 0, "web": 1})
    assert [s.ratio for s in mixed_sources(integers)] == [1.0, 0.0]


@pytest.mark.parametrize(
    ("ratios", "message"),
    [
        ([0.5, 0.5], "data.ratios=[0.5, 0.5] must map every source to a number, e.g. data.ratios={web: 0.5, code: 0.5}"),
        ({"web": "0.5", "code": 0.5}, "must map every source to a number"),
        ({"web": True, "code": 0.5}, "must map every source to a number"),
        ({"wbe": 0.5, "code": 0.5}, "data.ratios: 'wbe' is not a source of data 'm'; did you mean web?"),
        ({"zzz": 0.5, "code": 0.5}, "data.ratios: 'zzz' is not a source of data 'm'; its sources are web, code"),
        ({"code": 1.0}, "data.ratios gives no ratio for web; give every source of data 'm' a ratio (web, code)"),
    ],
)  # fmt: skip
def test_bad_data_ratios_are_one_line(ratios, message):
    with pytest.raises(UserError) as info:
        mixed_sources(mix(("web", None), ("code", None), ratios=ratios))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_proxy_uses_each_source_up_to_its_share_of_the_larger_run():
    data = mix(("web", 0.5), ("code", 0.5, {"max_source_fraction": 0.5}), proxy_for_tokens=8_000)
    web, code = mixed_sources(data, duration_tokens=2_000)
    assert web.max_source_fraction == 0.25 and code.max_source_fraction == 0.125
    # the larger run reads 4,000 of web's 4,000 tokens once; the proxy 1,000 of its 1,000
    plans = mix_plan(data, [4_000, 8_000], duration=2_000)
    assert plans[0]["repetition"] == 1.0 and plans[1]["repetition"] == 1.0
    # a proxy longer than the run it stands for is not shrunk further than the run itself
    longer = mixed_sources(data, duration_tokens=16_000)
    assert [s.max_source_fraction for s in longer] == [1.0, 0.5]
    assert [s.max_source_fraction for s in mixed_sources(data)] == [1.0, 0.5]  # no duration


@pytest.mark.parametrize(
    ("sources", "proxy", "message"),
    [
        ((("a", 1.0),), 0, "data.proxy_for_tokens=0 must be a positive number of tokens"),
        ((("a", 1.0),), -5.0, "data.proxy_for_tokens=-5.0 must be a positive number of tokens"),
        ((("a", None), ("b", None)), 1e9, "data 'm': data.proxy_for_tokens needs a ratio per source"),
    ],
)  # fmt: skip
def test_a_bad_proxy_is_one_line(sources, proxy, message):
    with pytest.raises(UserError) as info:
        mixed_sources(mix(*sources, proxy_for_tokens=proxy), duration_tokens=100)
    assert str(info.value).startswith(message)


def test_every_missing_ratio_is_named():
    with pytest.raises(UserError) as info:
        mix_plan(mix(("a", 1.0), ("b", None), ("c", None)), [100] * 3, 10)
    assert str(info.value).endswith("missing: b, c")
    with pytest.raises(UserError) as info:
        mixed_sources(mix(("a", None), ("b", None), ("c", None), ratios={"a": 1.0}))
    assert str(info.value) == (
        "data.ratios gives no ratio for b, c; give every source of data 'm' a ratio (a, b, c)"
    )


def test_a_proxy_of_any_positive_size_is_accepted():
    data = mix(("a", 1.0), proxy_for_tokens=1.0)  # a run of one token: every source at full use
    assert mixed_sources(data, duration_tokens=100)[0].max_source_fraction == 1.0
    assert str(
        pytest.raises(UserError, mixed_sources, mix(("a", None), proxy_for_tokens=5.0)).value
    ) == (
        "data 'm': data.proxy_for_tokens needs a ratio per source (data.ratios={...} or "
        "sources[].ratio); a natural mix repeats every source alike"
    )
