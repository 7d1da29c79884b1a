"""The Chinchilla math: pure functions, the plan's parts, and composition, against hand-derived values.

Expected numbers below were worked out by hand from the formulas in the issue (batch law rounded
up to a power of two, LR law halved, 20 tokens/param, warmup N capped at 5%, periods at
0.5, 1, 2, 4, ... x C rounded to whole batches), not by calling olmotrain.
"""

from __future__ import annotations

import math

import pytest

from olmotrain import chinchilla
from olmotrain.config.compose import compose, group_options, resolve
from olmotrain.errors import UserError
from olmotrain.plan import Plan, derive_plan
from olmotrain.plan import schedule as plan_schedule

# N = num_non_embedding_params with the gpt-neox-olmo vocabulary padded to 50,304.
N_30M = 16_290_048
N_190M = 151_917_312

# (model, multiple) -> (batch, lr, beta2, duration, warmup, period ends, checkpoint steps)
HAND = {
    ("olmo2_30m", 0.25): (
        131072,
        0.004414704705569162,
        0.99,
        81395712,
        4069786,
        [81395712],
        [558, 621],
    ),
    ("olmo2_30m", 0.5): (
        131072,
        0.004414704705569162,
        0.99,
        162922496,
        8146125,
        [162922496],
        [1118, 1243],
    ),
    ("olmo2_30m", 1): (
        131072,
        0.004414704705569162,
        0.99,
        325844992,
        16290048,
        [162922496, 325844992],
        [1118, 1243, 2361, 2486],
    ),
    ("olmo2_30m", 4): (
        131072,
        0.004414704705569162,
        0.99,
        1303248896,
        16290048,
        [162922496, 325844992, 651558912, 1303248896],
        [1118, 1243, 2361, 2486, 4722, 4971, 9445, 9943],
    ),
    ("olmo2_30m", 5): (
        131072,
        0.004414704705569162,
        0.99,
        1628962816,
        16290048,
        [162922496, 325844992, 651558912, 1303248896, 1628962816],
        [1118, 1243, 2361, 2486, 4722, 4971, 9445, 9943, 12179, 12428],
    ),
    ("olmo2_30m", 16): (
        131072,
        0.004414704705569162,
        0.99,
        5212864512,
        16290048,
        [162922496, 325844992, 651558912, 1303248896, 2606366720, 5212864512],
        [1118, 1243, 2361, 2486, 4722, 4971, 9445, 9943, 18890, 19885, 37782, 39771],
    ),
    ("olmo2_190m", 0.25): (
        524288,
        0.002097361821734162,
        0.95,
        759693312,
        37984666,
        [759693312],
        [1304, 1449],
    ),
    ("olmo2_190m", 1): (
        524288,
        0.002097361821734162,
        0.95,
        3038248960,
        151912448,
        [1519386624, 3038248960],
        [2608, 2898, 5505, 5795],
    ),
    ("olmo2_190m", 5): (
        524288,
        0.002097361821734162,
        0.95,
        15191769088,
        151917312,
        [1519386624, 3038248960, 6076497920, 12153520128, 15191769088],
        [2608, 2898, 5505, 5795, 11010, 11590, 22021, 23181, 28396, 28976],
    ),
    ("olmo2_190m", 16): (
        524288,
        0.002097361821734162,
        0.95,
        48613556224,
        151917312,
        [1519386624, 3038248960, 6076497920, 12153520128, 24306515968, 48613556224],
        [2608, 2898, 5505, 5795, 11010, 11590, 22021, 23181, 44043, 46361, 88086, 92723],
    ),
    ("olmo2_1b", 4): (
        2097152,
        0.0010224930088724785,
        0.95,
        104891154432,
        1311131648,
        [13111394304, 26222788608, 52445577216, 104891154432],
        [5626, 6252, 11878, 12504, 23757, 25008, 47515, 50016],
    ),
    ("olmo2_14m", 0.5): (
        65536,
        0.005719898678166346,
        0.99,
        74907648,
        3745382,
        [74907648],
        [1028, 1143],
    ),
}

REAL_DATA = ["data=olmo_mix_v1_5", "tokenizer=gpt_neox_olmo"]  # the plan's 8192-token sequences


def plan_of(*overrides: str) -> Plan:
    return derive_plan(resolve(compose(list(overrides))))


@pytest.mark.parametrize(("model", "multiple"), sorted(HAND))
def test_composed_plan_matches_hand_values(model, multiple):
    batch, lr, beta2, duration, warmup, ends, ck_steps = HAND[(model, multiple)]
    p = plan_of(f"model={model}", f"chinchilla_multiple={multiple}", *REAL_DATA)
    assert p.sequence_length == 8192
    assert p.batch_size_tokens == batch
    assert p.lr == pytest.approx(lr, rel=1e-12)
    assert p.betas == [0.9, beta2]
    assert p.duration_tokens == duration
    assert p.max_steps == duration // batch
    assert p.warmup_tokens == warmup
    assert p.period_ends == ends
    assert [c.step for c in p.checkpoints] == ck_steps
    assert all(type(v) is int for v in (p.batch_size_tokens, p.duration_tokens, p.warmup_tokens))


def test_num_params_is_olmo_core_count_of_the_model_as_configured():
    from olmo_core.nn.transformer import TransformerConfig

    plan = plan_of("model=olmo2_30m", *REAL_DATA)
    assert plan.num_non_embedding_params == N_30M
    assert N_30M == TransformerConfig.olmo2_30M(vocab_size=50304).num_non_embedding_params
    # Overrides change N, and with it everything downstream.
    deeper = plan_of("model=olmo2_30m", "model.n_layers=8", *REAL_DATA)
    expected = TransformerConfig.olmo2_30M(vocab_size=50304, n_layers=8).num_non_embedding_params
    assert deeper.num_non_embedding_params == expected > N_30M
    assert deeper.lr < plan.lr


def test_batch_law_is_rounded_up_to_power_of_two():
    raw = round(2048 * 160 * (N_30M / 108e6) ** (2 / 3))
    assert raw == 92850
    assert chinchilla.target_batch_tokens(N_30M) == 131072
    assert chinchilla.next_power_of_two(131072) == 131072
    assert chinchilla.next_power_of_two(131073) == 262144


def test_batch_made_whole_sequences_and_divisible():
    b = chinchilla.plan_batch(131072, 8192, dp_size=1)
    assert (b.tokens, b.instances, b.micro_batch_instances, b.grad_accum_steps) == (
        131072,
        16,
        2,
        8,
    )
    # A target that is not whole sequences rounds UP.
    b = chinchilla.plan_batch(10000, 4096, dp_size=1)
    assert b.tokens == 12288 and b.instances == 3
    # Divisible by data-parallel x micro-batch, rounding up.
    b = chinchilla.plan_batch(8192 * 5, 8192, dp_size=4, micro_batch_instances=1)
    assert b.instances == 8 and b.grad_accum_steps == 2
    assert b.off_target == pytest.approx(0.6)


@pytest.mark.parametrize("batch", [524287, 524288])
def test_beta2_switches_at_half_a_million_tokens(batch):
    assert chinchilla.betas(batch) == (0.9, 0.95 if batch >= 524288 else 0.99)


def test_small_multiple_gives_one_period_and_capped_warmup():
    duration = chinchilla.duration_tokens(N_30M, 0.017, 131072)
    assert duration == 131072 * round(int(20 * N_30M * 0.017) / 131072)
    assert chinchilla.warmup_tokens(N_30M, duration) == round(0.05 * duration) < N_30M
    assert chinchilla.period_multiples(duration, N_30M, 131072, 20, 0.017) == [0.017]


def test_max_steps_sets_the_duration_and_the_last_period():
    assert chinchilla.duration_tokens(N_30M, 4, 131072, max_steps=100) == 100 * 131072
    plan = plan_of("model=olmo2_30m", "train.max_steps=3000", *REAL_DATA)
    assert plan.max_steps == 3000
    # 0.5xC and 1xC end before step 3000; the last period ends at it.
    assert plan.period_ends == [162922496, 325844992, 3000 * 131072]


def test_periods_never_empty_when_rounding_collapses_them():
    # C is ~1.2 batches: 0.5xC and 1xC both round to one batch.
    n, batch = 6000, 100_000
    duration = chinchilla.duration_tokens(n, 8, batch)
    mults = chinchilla.period_multiples(duration, n, batch, 20, 8)
    ends = chinchilla.period_ends(duration, mults, n, batch)
    assert all(length > 0 for length in chinchilla.period_lengths(ends))


@pytest.mark.parametrize("multiple", [0.5, 1, 2, 4, 16])
def test_power_of_two_multiples_match_olmo_core_wsds_configurator(multiple):
    """Re-derive olmo-core main's WSDSChinchillaRunConfigurator periods (not in 3.0.0)."""
    from olmo_core.train.common import Duration

    batch = chinchilla.target_batch_tokens(N_190M)

    def chin(c):  # its _chinchilla_duration: Duration.chinchilla_tokens rounded to batches
        tokens = Duration.chinchilla_tokens(c, model_params=N_190M).value
        return batch * round(tokens / batch)

    periods = [2**p for p in range(-1, int(math.log2(multiple)) + 1)]
    theirs = [chin(periods[0])] + [
        chin(c) - chin(p) for p, c in zip(periods, periods[1:], strict=False)
    ]
    duration = chinchilla.duration_tokens(N_190M, multiple, batch)
    ends = chinchilla.period_ends(
        duration, chinchilla.period_multiples(duration, N_190M, batch, 20, multiple), N_190M, batch
    )
    assert chinchilla.period_lengths(ends) == theirs
    assert chinchilla.peak_lr(N_190M) == pytest.approx(
        0.0047 * (N_190M / 108_000_000) ** (-1 / 3) / 2.0
    )


def test_checkpoints_sit_at_olmo_core_wsds_decay_start_and_end():
    from olmo_core.optim import WSDS, SchedulerUnits

    batch, n = 131072, N_30M
    duration = chinchilla.duration_tokens(n, 4, batch)
    mults = chinchilla.period_multiples(duration, n, batch, 20, 4)
    ends = chinchilla.period_ends(duration, mults, n, batch)
    sched = WSDS(
        units=SchedulerUnits.tokens,
        warmup=chinchilla.warmup_tokens(n, duration),
        decay_fraction=0.1,
        period_lengths=chinchilla.period_lengths(ends),
    )
    for point in chinchilla.checkpoint_points(ends, mults, batch):
        lr = sched.get_lr(1.0, point.tokens, duration)
        if "pre-decay" in point.label:
            assert lr == pytest.approx(1.0)  # still at the peak
            assert sched.get_lr(1.0, point.tokens + batch, duration) < 1.0  # the next step decays
        else:
            assert lr == pytest.approx(0.0, abs=1e-9)  # bottom of the decay


def test_the_plans_parts_directly():
    config = resolve(compose(["model=olmo2_30m", *REAL_DATA]))
    assert plan_schedule.plan_batch(config, N_30M).tokens == 131072
    config.train.global_batch_size, config.train.sequence_length = 1000, 512
    assert plan_schedule.plan_batch(config, N_30M).tokens == 1024  # whole sequences, rounded up
    assert plan_schedule.adam_betas(config.train, 131072) == [0.9, 0.99]
    assert chinchilla.checkpoint_points([100, 300], [0.5, 1.0], 10, 0.1)[
        2
    ] == chinchilla.Checkpoint(280, 28, "period 2 1xC pre-decay")
    for bad in (0, -1.5):
        config.chinchilla_multiple = bad
        with pytest.raises(UserError, match="chinchilla_multiple"):
            plan_schedule.duration_tokens(config, N_30M, 131072)
    config.chinchilla_multiple, config.train.decay_fraction = 1.0, 0.7
    with pytest.raises(UserError, match="decay_fraction"):
        plan_schedule.schedule(config, N_30M)


# Every model with the default schedule, and every schedule with one model: a schedule group sets
# only schedule.* and its math is checked by hand above, so the 45 x 5 pairs composed nothing
# that these 45 + 5 do not.
EVERY_MODEL_AND_SCHEDULE = [(model, "wsds") for model in group_options("model")] + [
    ("olmo2_30m", schedule) for schedule in group_options("schedule") if schedule != "wsds"
]


@pytest.mark.parametrize(("model", "schedule"), EVERY_MODEL_AND_SCHEDULE)
def test_every_model_and_schedule_composes(model, schedule):
    p = plan_of(f"model={model}", f"schedule={schedule}", *REAL_DATA)
    assert p.num_non_embedding_params > 0
    assert p.batch_size_tokens % 8192 == 0
    assert p.period_ends[-1] == p.duration_tokens


def test_next_power_of_two_is_the_smallest_power_at_or_above():
    assert [chinchilla.next_power_of_two(x) for x in (-3, 0, 1, 2, 3, 4, 5, 1000, 1024)] == [
        1, 1, 1, 2, 4, 4, 8, 1024, 1024,
    ]  # fmt: skip


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@pytest.mark.parametrize("dp", [1, 2, 3, 8])
@pytest.mark.parametrize("seq", [1, 7, 512, 4096])
@pytest.mark.parametrize("target", [1, 1000, 4096, 100_003, 2**20])
def test_plan_batch_is_the_least_whole_batch_at_or_above_the_target(target, seq, dp):
    """What every run's batch rests on: never below the target, whole sequences split evenly
    over ranks and micro-batches, the largest power-of-two micro-batch that fits, and no more
    rounding up than one sequence per rank."""
    cap = 16_384
    b = chinchilla.plan_batch(target, seq, dp, max_micro_batch_tokens=cap)
    assert b.tokens == b.instances * seq and b.tokens >= target
    per_rank = b.instances // dp
    assert b.instances == per_rank * dp and per_rank == _ceil_div(_ceil_div(target, seq), dp)
    micro = b.micro_batch_instances
    assert micro & (micro - 1) == 0 and per_rank % micro == 0
    assert micro <= max(1, cap // seq)
    bigger = micro * 2
    assert bigger > max(1, cap // seq) or bigger > per_rank or per_rank % bigger
    assert b.grad_accum_steps * micro == per_rank and b.target_tokens == target
    # an explicit micro-batch: the batch rounds up to whole (ranks x micro-batch) units
    e = chinchilla.plan_batch(target, seq, dp, micro_batch_instances=3)
    unit = dp * 3
    assert e.instances % unit == 0 and e.instances - unit < _ceil_div(target, seq) <= e.instances
    assert e.micro_batch_instances == 3 and e.grad_accum_steps == e.instances // unit


@pytest.mark.parametrize("args", [(0, 512, 1), (1024, 0, 1), (1024, 512, 0), (-1, 512, 1)])
def test_plan_batch_refuses_non_positive_inputs(args):
    with pytest.raises(ValueError, match="must be positive"):
        chinchilla.plan_batch(*args)
    with pytest.raises(ValueError, match="at least one sequence"):
        chinchilla.plan_batch(1024, 512, 1, micro_batch_instances=0)


# ---------------------------------------------------------------------------------------------
# WSD-S periods and checkpoints at numbers worked out by hand (n = 1,000: 1xC = 20,000 tokens)


def test_wsds_periods_double_until_the_duration():
    n, batch, duration = 1_000, 1_000, 80_000  # 4xC
    multiples = chinchilla.period_multiples(duration, n, batch)
    assert multiples == [0.5, 1, 2, 4.0]
    ends = chinchilla.period_ends(duration, multiples, n, batch)
    assert ends == [10_000, 20_000, 40_000, 80_000]
    assert chinchilla.period_lengths(ends) == [10_000, 10_000, 20_000, 40_000]
    # the last period's label: the duration's own multiple, or the one given
    assert chinchilla.period_multiples(90_000, n, batch)[-1] == 4.5
    assert chinchilla.period_multiples(90_000, n, batch, final_multiple=4)[-1] == 4
    assert chinchilla.period_multiples(90_000, n, batch, tokens_per_param=10)[-2:] == [8, 9.0]
    # shorter than half a Chinchilla: one period, the whole run
    assert chinchilla.period_multiples(5_000, n, batch) == [0.25]
    assert chinchilla.period_ends(5_000, [0.25], n, batch) == [5_000]


def test_wsds_periods_whose_rounded_end_does_not_advance_are_skipped():
    # batch 15,000: 0.5xC and 1xC both round to one batch; 2xC to 3 batches, 4xC to 5
    multiples = chinchilla.period_multiples(90_000, 1_000, 15_000)
    assert multiples == [0.5, 2, 4, 4.5]
    ends = chinchilla.period_ends(90_000, multiples, 1_000, 15_000)
    assert ends == [15_000, 45_000, 75_000, 90_000]


def test_checkpoints_are_each_periods_decay_start_and_end():
    ends, multiples = [10_000, 20_000, 40_000, 80_000], [0.5, 1, 2, 4.0]
    points = chinchilla.checkpoint_points(ends, multiples, 1_000)  # decay: 10% of each period
    assert [(p.tokens, p.step, p.label) for p in points] == [
        (9_000, 9, "period 1 0.5xC pre-decay"), (10_000, 10, "period 1 0.5xC end"),
        (19_000, 19, "period 2 1xC pre-decay"), (20_000, 20, "period 2 1xC end"),
        (38_000, 38, "period 3 2xC pre-decay"), (40_000, 40, "period 3 2xC end"),
        (76_000, 76, "period 4 4xC pre-decay"), (80_000, 80, "period 4 4xC end"),
    ]  # fmt: skip
    # a decay start inside a step: the last whole step before it
    odd = chinchilla.checkpoint_points([9_000], [0.45], 1_000, decay_fraction=0.25)
    assert [(p.tokens, p.step) for p in odd] == [(6_750, 6), (9_000, 9)]


@pytest.mark.parametrize(
    ("c", "text"), [(0.5, "0.5"), (1.0, "1"), (2.5, "2.5"), (0.125, "0.125"), (1 / 3, "0.3333")]
)
def test_multiples_are_written_without_trailing_zeros(c, text):
    assert chinchilla.format_multiple(c) == text


def test_duration_and_warmup_by_hand():
    # 20 x 1,000 x 4 = 80,000 tokens; 80,000 / 3,000 = 26.7 batches -> 27
    assert chinchilla.duration_tokens(1_000, 4, 3_000) == 81_000
    assert chinchilla.duration_tokens(1_000, 4, 3_000, tokens_per_param=10) == 39_000
    assert chinchilla.duration_tokens(1_000, 4, 3_000, max_steps=5) == 15_000
    assert chinchilla.duration_tokens(1_000, 0.01, 3_000) == 3_000  # at least one batch
    assert chinchilla.chinchilla_tokens(1_000, 0.5) == 10_000
    assert chinchilla.chinchilla_tokens(333, 1.0, 20.5) == 6_826  # truncated, as olmo-core
    assert chinchilla.warmup_tokens(1_000, 80_000) == 1_000  # n tokens
    assert chinchilla.warmup_tokens(1_000, 10_000) == 500  # capped at 5% of the run
    assert chinchilla.warmup_tokens(1_000, 10_010) == 500  # 500.5 rounds to even


def test_plan_batch_defaults_are_one_rank_and_16k_token_micro_batches():
    b = chinchilla.plan_batch(65_536, 2_048)
    assert (b.instances, b.micro_batch_instances, b.grad_accum_steps) == (32, 8, 4)
    assert (
        chinchilla.plan_batch(65_536, 2_048, max_micro_batch_tokens=4_096).micro_batch_instances
        == 2
    )


def test_counts_are_integers_and_internal_misuse_is_named():
    """Steps, sequences and micro-batches are whole numbers (the plan's JSON says 80, not 80.0)."""
    points = chinchilla.checkpoint_points([10_000, 20_000], [0.5, 1.0], 1_000)
    assert all(type(p.step) is int and type(p.tokens) is int for p in points)
    b = chinchilla.plan_batch(8192 * 12, 8192, dp_size=3)
    assert all(type(v) is int for v in (b.instances, b.micro_batch_instances, b.grad_accum_steps))
    with pytest.raises(
        ValueError, match="^batch, sequence length and data-parallel size must be positive$"
    ):
        chinchilla.plan_batch(0, 8192)
    with pytest.raises(ValueError, match="^micro-batch must be at least one sequence$"):
        chinchilla.plan_batch(8192, 8192, micro_batch_instances=0)


def test_a_sequence_longer_than_the_micro_batch_budget_is_one_per_micro_batch():
    b = chinchilla.plan_batch(4 * 32_768, 32_768, max_micro_batch_tokens=16_384)
    assert (b.micro_batch_instances, b.grad_accum_steps) == (1, 4)


def test_the_lr_multiplier_scales_the_law():
    assert chinchilla.peak_lr(N_30M, 2.0) == pytest.approx(2 * chinchilla.peak_lr(N_30M))
