"""The run's schedule with the user's settings over the Chinchilla law (``olmotrain.plan.schedule``):
each setting wins where given and is refused in one line where it cannot work; and olmo-core's
LR scheduler built from it, at values worked out by hand. In this process, on one composed config."""

from __future__ import annotations

import copy
import functools
from types import SimpleNamespace

import pytest
from olmo_core.optim import SchedulerUnits

from olmotrain import chinchilla
from olmotrain.errors import UserError
from olmotrain.plan import schedule as S

N = 1_000_000  # non-embedding parameters: the law's batch is 2,048 x 160 x (1e6/108e6)^(2/3)
LAW_BATCH = 16_384  # ... = 14,395 tokens, rounded up to a power of two


@functools.cache
def _base():
    from olmotrain.config.compose import compose, resolve

    return resolve(compose(["model=olmo2_1m", "cluster.device=cpu"]))


def config(**train):
    """The composed config with ``train.KEY=VALUE`` settings (a fresh copy each time)."""
    c = copy.deepcopy(_base())
    c.train.sequence_length = 512
    for key, value in train.items():
        setattr(c.train, key, value)
    return c


def test_the_law_decides_what_is_not_set():
    c = config()
    s = S.schedule(c, N)
    assert chinchilla.target_batch_tokens(N) == LAW_BATCH
    assert (s.batch.tokens, s.batch.instances) == (LAW_BATCH, 32)
    assert s.lr == pytest.approx(chinchilla.peak_lr(N)) and s.betas == [0.9, 0.99]
    assert s.duration_tokens == 20_004_864  # 20 x 1e6 rounded to whole 16,384-token batches
    assert s.max_steps == 1_221 == s.duration_tokens // LAW_BATCH
    assert s.warmup_tokens == 1_000_000  # n tokens, under 5% of the run
    assert s.period_multiples == [0.5, 1.0] and s.period_ends == [9_994_240, 20_004_864]
    assert [ck.label for ck in s.checkpoints][-1] == "period 2 1xC end"


def test_a_chinchilla_multiple_and_max_steps_set_the_length():
    c = config()
    c.chinchilla_multiple = 2.0
    s = S.schedule(c, N)
    assert s.period_multiples == [0.5, 1, 2.0] and s.checkpoints[-1].label == "period 3 2xC end"
    capped = S.schedule(config(max_steps=100), N)
    assert capped.duration_tokens == 100 * LAW_BATCH and capped.max_steps == 100
    # the last period is labelled with what the run is, not the multiple asked for
    assert capped.period_multiples == [pytest.approx(100 * LAW_BATCH / 20e6)]


def test_explicit_batch_lr_and_betas_win():
    c = config(global_batch_size=5_000, lr=3e-3, lr_multiplier=2.0, betas=[0.8, 0.9])
    s = S.schedule(c, N)
    assert (s.batch.target_tokens, s.batch.tokens) == (5_000, 5_120)  # 10 whole sequences
    assert s.lr == pytest.approx(6e-3) and s.betas == [0.8, 0.9]
    assert S.peak_lr(config(lr_multiplier=0.5).train, N) == pytest.approx(chinchilla.peak_lr(N) / 2)
    assert S.adam_betas(config(betas=[0, 0.5]).train, LAW_BATCH) == [0.0, 0.5]
    assert S.adam_betas(config().train, 1 << 20) == [0.9, 0.95]


def test_the_batch_splits_over_ranks_and_micro_batches():
    c = config(micro_batch_size=2)
    c.cluster.devices = 4
    b = S.plan_batch(c, N)
    assert (b.instances, b.micro_batch_instances, b.grad_accum_steps) == (32, 2, 4)
    auto = S.plan_batch(config(), N)  # CPU: 16,384-token micro-batches, 32 sequences of 512
    assert (auto.micro_batch_instances, auto.grad_accum_steps) == (32, 1)


@pytest.mark.parametrize(
    ("train", "expected"),
    [
        ({"warmup_steps": 10}, 10 * LAW_BATCH),
        ({"warmup_tokens": 12_345}, 12_345),
        ({"warmup_steps": 0}, 0),
        ({"warmup_steps": 3, "warmup_tokens": 99}, 3 * LAW_BATCH),  # steps win
    ],
)
def test_an_explicit_warmup_wins(train, expected):
    assert S.schedule(config(**train), N).warmup_tokens == expected


def test_a_warmup_fraction_is_whole_steps_of_the_run():
    c = config()
    c.schedule.warmup_fraction = 0.01  # 1% of 1,221 steps = 12.2 -> 12 steps
    assert S.warmup_tokens(c, N, 1_221 * LAW_BATCH, LAW_BATCH) == 12 * LAW_BATCH
    c.schedule.warmup_fraction = 0.0001  # under a step: one step
    assert S.warmup_tokens(c, N, 1_221 * LAW_BATCH, LAW_BATCH) == LAW_BATCH
    c.schedule.warmup_fraction = 0.0
    assert S.warmup_tokens(c, N, 1_221 * LAW_BATCH, LAW_BATCH) == LAW_BATCH


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"global_batch_size": 0}, "train.global_batch_size=0 must be a positive number of tokens (or null for the Chinchilla batch)"),
        ({"sequence_length": 0}, "train.sequence_length=0 must be positive"),
        ({"micro_batch_size": 0}, "train.micro_batch_size=0 must be at least 1 sequence (or null for automatic)"),
        ({"lr_multiplier": 0.0}, "train.lr_multiplier=0.0 must be > 0"),
        ({"lr": 0.0}, "train.lr=0.0 must be > 0 (or null for the Chinchilla law)"),
        ({"lr": -1e-3}, "train.lr=-0.001 must be > 0"),
        ({"betas": [0.9]}, "train.betas=[0.9] must be two numbers in [0, 1), e.g. train.betas=[0.9,0.95]"),
        ({"betas": [0.9, 1.0]}, "train.betas=[0.9, 1.0] must be two numbers in [0, 1)"),
        ({"betas": [-0.1, 0.9]}, "train.betas=[-0.1, 0.9] must be two numbers in [0, 1)"),
        ({"tokens_per_param": 0.0}, "train.tokens_per_param=0.0 must be > 0 (the Chinchilla value is 20)"),
        ({"max_steps": 0}, "train.max_steps=0 must be at least 1 (or null for the Chinchilla duration)"),
        ({"warmup_steps": -1}, "train.warmup_steps=-1 must be >= 0 (or null for the Chinchilla law)"),
        ({"warmup_tokens": -5}, "train.warmup_tokens=-5 must be >= 0"),
        ({"max_steps": 10, "warmup_steps": 10}, "train.warmup_steps: warmup of 163,840 tokens is not shorter than the run (163,840 tokens); lower it"),
        ({"max_steps": 10, "warmup_tokens": 200_000}, "train.warmup_tokens: warmup of 200,000 tokens is not shorter than the run"),
        ({"decay_fraction": 0.0}, "train.decay_fraction=0.0 must be in (0, 0.5)"),
        ({"decay_fraction": 0.5}, "train.decay_fraction=0.5 must be in (0, 0.5)"),
    ],
)  # fmt: skip
def test_a_setting_that_cannot_work_is_one_line(train, message):
    with pytest.raises(UserError) as info:
        S.schedule(config(**train), N)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"chinchilla_multiple": 0}, "chinchilla_multiple=0 must be > 0 (e.g. chinchilla_multiple=1 for Chinchilla-optimal)"),
        ({"devices": 0}, "cluster.devices=0 must be at least 1"),
        ({"warmup_fraction": 1.0}, "schedule.warmup_fraction=1.0 must be in [0, 1)"),
        ({"warmup_fraction": -0.1}, "schedule.warmup_fraction=-0.1 must be in [0, 1)"),
    ],
)  # fmt: skip
def test_other_settings_that_cannot_work_are_one_line(change, message):
    c = config()
    if "chinchilla_multiple" in change:
        c.chinchilla_multiple = change["chinchilla_multiple"]
    if "devices" in change:
        c.cluster.devices = change["devices"]
    if "warmup_fraction" in change:
        c.schedule.warmup_fraction = change["warmup_fraction"]
    with pytest.raises(UserError) as info:
        S.schedule(c, N)
    assert str(info.value).startswith(message)


# ---------------------------------------------------------------------------------------------
# olmo-core's scheduler, from the plan


def plan(**fields):
    """The plan fields the scheduler reads: a 100-step run of 1,000-token batches."""
    values = dict(
        warmup_tokens=10_000, period_lengths=[40_000, 60_000], decay_fraction=0.1,
        duration_tokens=100_000, lr=1.0, max_steps=100, batch_size_tokens=1_000,
        checkpoints=[chinchilla.Checkpoint(36_000, 36, "p1"), chinchilla.Checkpoint(40_000, 40, "p1")],
    )  # fmt: skip
    return SimpleNamespace(**{**values, **fields})


def lr_at(name: str, tokens: int, **schedule) -> float:
    c = config()
    c.schedule.name = name
    for key, value in schedule.items():
        setattr(c.schedule, key, value)
    return float(S.scheduler(c, plan()).get_lr(1.0, tokens, 100_000))


def test_every_schedule_by_hand():
    # warmup: linear from warmup_min_lr to the peak over 10,000 tokens
    assert lr_at("constant", 5_000) == pytest.approx(0.5)
    assert lr_at("constant", 5_000, warmup_min_lr=0.2) == pytest.approx(0.6)
    assert lr_at("constant", 90_000) == 1.0
    # WSD-S: stable, then each period decays over its last 10% to decay_min_lr
    assert lr_at("wsds", 30_000) == 1.0
    assert lr_at("wsds", 38_000) == pytest.approx(0.5)  # halfway down period 1's decay
    assert lr_at("wsds", 40_000) == pytest.approx(0.0, abs=1e-9)
    assert lr_at("wsds", 60_000) == 1.0  # period 2 is stable again
    assert lr_at("wsds", 97_000, decay_min_lr=0.1) == pytest.approx(0.55)
    # WSD: one decay, over the last 10% of the run
    assert lr_at("wsd", 40_000) == 1.0 and lr_at("wsd", 95_000) == pytest.approx(0.5)
    # cosine and anneal end at alpha_f of the peak
    assert lr_at("cosine", 100_000, alpha_f=0.1) == pytest.approx(0.1)
    assert lr_at("cosine", 55_000, alpha_f=0.0) == pytest.approx(0.5)
    assert lr_at("anneal", 55_000, alpha_f=0.0) == pytest.approx(0.5)
    assert lr_at("anneal", 100_000, alpha_f=0.2) == pytest.approx(0.2)


def test_an_unknown_schedule_is_one_line():
    with pytest.raises(UserError) as info:
        lr_at("linear", 0)
    assert str(info.value) == (
        "unknown schedule 'linear'; choose wsds, cosine, wsd, anneal or constant"
    )


def test_the_sampled_lrs_are_the_schedulers_at_every_step_and_checkpoint():
    c = config()
    c.schedule.name = "wsds"
    samples = S.sampled_lrs(c, plan(), points=30)  # stride 3: 0, 3, ..., 99, then 100
    steps = [step for step, _, _ in samples]
    assert steps[:3] == [0, 3, 6] and steps[-2:] == [99, 100] and 36 in steps and 40 in steps
    assert steps == sorted(set(steps))
    by_step = {step: (tokens, lr) for step, tokens, lr in samples}
    assert by_step[40] == (40_000, pytest.approx(0.0, abs=1e-9))
    assert by_step[36] == (36_000, pytest.approx(1.0))
    assert by_step[3] == (3_000, pytest.approx(0.3))
    every = S.sampled_lrs(c, plan(), points=2_000)  # more points than steps: every step
    assert [s for s, _, _ in every] == list(range(101))


def test_the_schedule_follows_the_plan_whatever_duration_the_caller_passes():
    """The trainer passes its own t_max; the scheduler is fitted to the plan's duration."""
    for name in ("cosine", "anneal"):
        c = config()
        c.schedule.name, c.schedule.alpha_f = name, 0.0
        sched = S.scheduler(c, plan())
        assert float(sched.get_lr(1.0, 100_000, 400_000)) == pytest.approx(0.0, abs=1e-9)
        assert sched.units == SchedulerUnits.tokens


def test_wsd_decays_over_the_plans_fraction_to_its_floor():
    c = config()
    c.schedule.name, c.schedule.decay_min_lr = "wsd", 0.2
    sched = S.scheduler(c, plan(decay_fraction=0.2))  # decay over the last 20,000 tokens
    assert float(sched.get_lr(1.0, 80_000, 100_000)) == pytest.approx(1.0)
    assert float(sched.get_lr(1.0, 90_000, 100_000)) == pytest.approx(0.6)
    assert float(sched.get_lr(1.0, 100_000, 100_000)) == pytest.approx(0.2)


def test_periods_and_checkpoints_follow_tokens_per_param_and_decay_fraction():
    s = S.schedule(config(tokens_per_param=10.0, decay_fraction=0.2), N)
    # 1xC = 10 tokens per parameter: 10,000,000 tokens, 610 whole batches
    assert s.duration_tokens == 610 * LAW_BATCH
    assert s.period_ends == [305 * LAW_BATCH, 610 * LAW_BATCH]
    first = s.checkpoints[0]  # 20% of the first period before its end
    assert first.tokens == 305 * LAW_BATCH - round(0.2 * 305 * LAW_BATCH)
    assert first.step == first.tokens // LAW_BATCH == 244
    assert [ck.step for ck in s.checkpoints] == [244, 305, 549, 610]


def test_the_micro_batch_is_sized_for_the_device():
    cpu = S.plan_batch(config(global_batch_size=131_072), N)  # 256 sequences of 512
    assert (cpu.micro_batch_instances, cpu.grad_accum_steps) == (32, 8)  # 16,384 tokens
    c = config(global_batch_size=131_072)
    c.cluster.device = "cuda"  # planned for a GPU (no GPU needed to plan)
    gpu = S.plan_batch(c, N)
    assert gpu.micro_batch_instances * 512 > 16_384


@pytest.mark.parametrize(
    "train",
    [{"global_batch_size": 1}, {"sequence_length": 1}, {"micro_batch_size": 1}, {"max_steps": 1},
     {"tokens_per_param": 0.5}],
)  # fmt: skip
def test_the_smallest_settings_are_accepted(train):
    S.plan_batch(config(**train), N)
    S.duration_tokens(config(**train), N, LAW_BATCH)


def test_the_default_picture_samples_2000_points():
    c = config()
    c.schedule.name = "constant"
    steps = [s for s, _, _ in S.sampled_lrs(c, plan(max_steps=10_000, checkpoints=[]))]
    assert steps[:3] == [0, 5, 10] and steps[-1] == 10_000 and len(steps) == 2_001
