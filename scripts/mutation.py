"""``make mutation``: do the tests catch a one-character change in the code users' results rest on?

For each target (a module where one wrong character changes a user's result, with the fast
tests that exercise it), mutmut (pinned in requirements.txt) mutates the module's functions in
a scratch copy of the repository and runs those tests against each mutant (only the tests that
reach the mutated function). The result per module: mutants killed / all, and the survivors
(``mutmut show NAME`` in the scratch copy shows each diff).

    .venv/bin/python scripts/mutation.py [--only chinchilla,shapes] [--keep] [--json]

Not part of ``make test``: minutes per module on 2 cores. Equivalent mutants (a change that
cannot alter any result) are listed in ``EQUIVALENT`` with why, and not counted against a module.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {
    # name: (module file, the tests that exercise it: tests that run in this process, so that
    # they see the mutant, and train nothing, since a training per mutant would take hours)
    "chinchilla": ("src/olmotrain/chinchilla.py", ["tests/test_chinchilla.py"]),
    "schedule": ("src/olmotrain/plan/schedule.py", ["tests/test_schedule.py"]),
    "shapes": ("src/olmotrain/model/shapes.py", ["tests/test_shapes.py", "tests/test_lws.py"]),
    "compare": ("src/olmotrain/confidence/compare.py", ["tests/test_confidence_math.py"]),
    "noise": ("src/olmotrain/confidence/noise.py", ["tests/test_confidence_math.py"]),
    "bootstrap": ("src/olmotrain/confidence/bootstrap.py", ["tests/test_confidence_math.py"]),
    "decide": ("src/olmotrain/ladder/decide.py", ["tests/test_decide.py"]),
    "ratios": ("src/olmotrain/data/ratios.py", ["tests/test_ratios.py"]),
    "tokens": ("src/olmotrain/data/tokens.py", ["tests/test_token_checks.py"]),
    "parity": ("src/olmotrain/export/parity.py", ["tests/test_parity.py"]),
    "fit": ("src/olmotrain/ladder/fit.py", ["tests/test_fit.py"]),
    "propose": ("src/olmotrain/mixture/propose.py", ["tests/test_propose.py"]),
}
EQUIVALENT: dict[str, str] = {
    # chinchilla.py
    "olmotrain.chinchilla.x_next_power_of_two__mutmut_1": "x < 1, x <= 1 and x < 2 all return "
    "1 for x = 1, the power of two at or above it",
    "olmotrain.chinchilla.x_next_power_of_two__mutmut_2": "as next_power_of_two__mutmut_1",
    "olmotrain.chinchilla.x_period_lengths__mutmut_4": "[0] + ends[:-1] and ends have one "
    "length: zip's strictness never acts",
    "olmotrain.chinchilla.x_period_lengths__mutmut_7": "as period_lengths__mutmut_4",
    "olmotrain.chinchilla.x_period_lengths__mutmut_12": "as period_lengths__mutmut_4",
    "olmotrain.chinchilla.x_checkpoint_points__mutmut_10": "ends, their lengths and the "
    "multiples are one per period by construction: zip's strictness never acts",
    "olmotrain.chinchilla.x_checkpoint_points__mutmut_14": "as checkpoint_points__mutmut_10",
    "olmotrain.chinchilla.x_checkpoint_points__mutmut_16": "as checkpoint_points__mutmut_10",
    "olmotrain.chinchilla.x_period_multiples__mutmut_4": "a period's end is at least one batch "
    "of at least one sequence; it is 1 token only for a 1-token batch and a model under 0.15 "
    "parameters",
    "olmotrain.chinchilla.x_plan_batch__mutmut_2": "the micro-batch is a power of two of "
    "sequences at most cap: 16,384 // s and 16,385 // s have the same powers of two below them",
    "olmotrain.chinchilla.x_plan_batch__mutmut_29": "micro * 2 is an integer: it is <= x exactly "
    "when it is <= floor(x)",
    # model/shapes.py: _applied's shape is only asked whether it has a problem
    "olmotrain.model.shapes.x__applied__mutmut_38": "kv heads follow the new n_heads or stay: "
    "_with_kv already set any n_kv_heads that would not divide, so both divide",
    "olmotrain.model.shapes.x__applied__mutmut_44": "head_dim_derived changes the wording of a "
    "problem, and _applied's shape is only asked whether it has one",
    "olmotrain.model.shapes.x__applied__mutmut_50": "as _applied__mutmut_44",
    "olmotrain.model.shapes.x__candidates__mutmut_8": "head size d_model + 1 never divides d_model",
    "olmotrain.model.shapes.x__candidates__mutmut_72": "n_heads = d_model // 2 + 1 gives "
    "d_model // n_heads = 1 (or 0), never a RoPE head size",
    "olmotrain.model.shapes.x__candidates__mutmut_82": "fixes is still empty there: = and += agree",
    "olmotrain.model.shapes.x_problem__mutmut_17": "head_dim is never negative (model.head_dim "
    "is checked positive first; d_model // n_heads >= 0): x % 2 and x / 2 are falsy only at 0",
    "olmotrain.model.shapes.x_shape_fixes__mutmut_3": "every candidate is a trainable shape by "
    "construction (test_shapes checks each fix offered over a grid, against the rules restated); "
    "the check in shape_fixes is a safety net",
    # confidence/compare.py
    "olmotrain.confidence.compare.x_p_a_better__mutmut_6": "multiplying or dividing by +-1 agree",
    "olmotrain.confidence.compare.x_p_a_better__mutmut_28": "diff == 0 returned 0.5 just before",
    # confidence/noise.py
    "olmotrain.confidence.noise.x_detrended__mutmut_26": "a least-squares polynomial fit does not "
    "depend on the scale of x (only its conditioning does, and centring already gives that)",
    "olmotrain.confidence.noise.x_detrended__mutmut_28": "as detrended__mutmut_26 for a range > 0; "
    "a zero range (every step equal) is never a run's evaluations",
    "olmotrain.confidence.noise.x_detrended__mutmut_30": "with a zero range x is 0 everywhere, "
    "whatever it is divided by",
    "olmotrain.confidence.noise.x_run_variance__mutmut_3": "an unmeasured checkpoint noise makes "
    "a floor Variance(0.0, 0), which equals NOT_MEASURED, and a measured seed variance is >= 0",
    "olmotrain.confidence.noise.x_detrended__mutmut_3": "steps are numbers (a run's evaluated "
    "steps, never missing): as ints or as floats the arithmetic agrees",
    "olmotrain.confidence.noise.x_detrended__mutmut_5": "as detrended__mutmut_3",
    # data/ratios.py
    "olmotrain.data.ratios.x__with_ratios__mutmut_21": "only the closest match is used: "
    "get_close_matches puts it first whatever n is",
    "olmotrain.data.ratios.x__with_ratios__mutmut_23": "as _with_ratios__mutmut_21",
    "olmotrain.data.ratios.x_mix_plan__mutmut_35": "> or >= a tolerance of 1e-6: a float sum "
    "exactly 1e-6 from 1 does not occur",
    "olmotrain.data.ratios.x_mix_plan__mutmut_56": "the sources, their token counts and ratios "
    "are lists of one length by construction: zip's strictness never acts",
    "olmotrain.data.ratios.x_mix_plan__mutmut_60": "as mix_plan__mutmut_56",
    "olmotrain.data.ratios.x_mix_plan__mutmut_61": "as mix_plan__mutmut_56",
    # ladder/decide.py
    "olmotrain.ladder.decide.x__finite_mean__mutmut_4": "no other warning arises in np.nanmean",
    "olmotrain.ladder.decide.x__with_columns__mutmut_15": "merging on the common columns is "
    "merging on the run and step: the two tables share exactly those",
    "olmotrain.ladder.decide.x__with_columns__mutmut_18": "as _with_columns__mutmut_15",
    "olmotrain.ladder.decide.x__with_columns__mutmut_19": "every run's last step is a row of the "
    "frame it came from: an inner and a left merge agree",
    "olmotrain.ladder.decide.x__with_columns__mutmut_29": "pandas reads a column of None as "
    "missing, as it reads NaN: the same sizes, order and compute",
    "olmotrain.ladder.decide.x_accuracy_interval__mutmut_10": "the interval's ends are "
    "percentiles of a discrete statistic (a share of pairs) over 2,000 redraws, which pin them "
    "whatever the seed",
    "olmotrain.ladder.decide.x_accuracy_interval__mutmut_11": "as accuracy_interval__mutmut_10",
    "olmotrain.ladder.decide.x_accuracy_interval__mutmut_16": "the mixes are the small size's "
    "own: reindexing its table by them changes nothing",
    "olmotrain.ladder.decide.x_accuracy_interval__mutmut_6": "a mix the small size lacks has NaN "
    "scores there and counts in no pair, as a mix the target lacks counts in none",
    "olmotrain.ladder.decide.x_seed_averaged_accuracy__mutmut_16": "mixes and values are two "
    "columns of one table: zip's strictness never acts",
    "olmotrain.ladder.decide.x_seed_averaged_accuracy__mutmut_19": "as seed_averaged__mutmut_16",
    "olmotrain.ladder.decide.x_seed_averaged_accuracy__mutmut_24": "as seed_averaged__mutmut_16",
    # plan/schedule.py
    "olmotrain.plan.schedule.x_sampled_lrs__mutmut_37": "the scheduler carries the plan's "
    "duration as its t_max, which wins over the one passed to get_lr",
    # export/parity.py
    "olmotrain.export.parity.x_check_parity__mutmut_4": "hf_dir is always a local directory: "
    "transformers reads it without the hub whatever local_files_only says",
    "olmotrain.export.parity.x_check_parity__mutmut_7": "as check_parity__mutmut_4",
    "olmotrain.export.parity.x_check_parity__mutmut_8": "as check_parity__mutmut_4",
    "olmotrain.export.parity.x_check_parity__mutmut_96": "count is the number of logits "
    "compared, never below 2 (a sequence of a few tokens over the vocabulary)",
    "olmotrain.export.parity.x_round_weights__mutmut_2": "rounding float32 weights to float32 "
    "changes nothing, so skipping it or not agrees",
    "olmotrain.export.parity.x_round_weights__mutmut_3": "as round_weights__mutmut_2",
    # confidence/bootstrap.py
    "olmotrain.confidence.bootstrap.x_bootstrap__mutmut_8": "rng.integers(n) draws from [0, n) "
    "as rng.integers(0, n) does, from the same stream",
    "olmotrain.confidence.bootstrap.x_bootstrap__mutmut_14": "None stored in a float array is NaN",
    "olmotrain.confidence.bootstrap.x_percentile_interval__mutmut_22": 'float("NAN") is NaN',
    "olmotrain.confidence.bootstrap.x_percentile_interval__mutmut_25": 'float("NAN") is NaN',
    # mixture/propose.py
    "olmotrain.mixture.propose.x__tokens__mutmut_18": "at exactly 1,000 of a unit the text reads "
    "1000 and takes the next unit anyway",
    "olmotrain.mixture.propose.x__tokens__mutmut_20": "a count in [1000^k, 1001^k) shows as "
    "1000-1004 of the unit below, which rounds up to 1 of this one: the text it would have had",
    "olmotrain.mixture.propose.x__tokens__mutmut_38": "at x = 10 two significant digits and no "
    "decimals both read 10",
    "olmotrain.mixture.propose.x__tokens__mutmut_39": "for x in [10, 11) two significant digits "
    "are the integer rounding, as no decimals are",
    "olmotrain.mixture.propose.x__tokens__mutmut_51": "only a count of at least ~999.5 rounds up: "
    "n is never 0 there",
    "olmotrain.mixture.propose.x__tokens__mutmut_52": "as _tokens__mutmut_51: n is never below 1 "
    "there",
    "olmotrain.mixture.propose.x__check_names__mutmut_10": "difflib's default n is 3",
    "olmotrain.mixture.propose.x__kl__mutmut_14": "where a weight is 0 its term is 0 x log(1e-300 "
    "/ q), a finite 0, either way",
    "olmotrain.mixture.propose.x__scorer__mutmut_19": "with kl_weight 0 the penalty added is 0 x "
    "a finite KL",
    "olmotrain.mixture.propose.x__refine__mutmut_29": "adding v[0] / STEP to every partial "
    "derivative adds a multiple of (1, ..., 1), which the constraint sum = mass absorbs: SLSQP "
    "takes the same steps",
    "olmotrain.mixture.propose.x__refine__mutmut_31": "subtracting v[1] rather than v[0] shifts "
    "every partial derivative by one constant: as _refine__mutmut_29",
    "olmotrain.mixture.propose.x__refine__mutmut_36": "with constraints and bounds scipy's "
    "default method is SLSQP",
    "olmotrain.mixture.propose.x__refine__mutmut_43": "as _refine__mutmut_36",
    "olmotrain.mixture.propose.x__refine__mutmut_53": "scipy reads the method's name "
    "case-insensitively",
    "olmotrain.mixture.propose.x__refine__mutmut_65": "scipy reads a constraint's type "
    "case-insensitively",
    "olmotrain.mixture.propose.x__refine__mutmut_70": "without the constraint's exact Jacobian "
    "SLSQP takes finite differences of a linear function: the same values",
    "olmotrain.mixture.propose.x__refine__mutmut_71": "as _refine__mutmut_70",
    "olmotrain.mixture.propose.x__refine__mutmut_76": "SLSQP converges in far fewer than 200 "
    "iterations on these smooth laws",
    "olmotrain.mixture.propose.x_bootstrap_interval__mutmut_4": "the weights are float arrays "
    "already (metric tables, proposals)",
    "olmotrain.mixture.propose.x_bootstrap_interval__mutmut_6": "as bootstrap_interval__mutmut_4",
    "olmotrain.mixture.propose.x_bootstrap_interval__mutmut_13": "as bootstrap_interval__mutmut_4 "
    "(the objective's columns)",
    "olmotrain.mixture.propose.x_bootstrap_interval__mutmut_15": "as bootstrap_interval__mutmut_13",
    "olmotrain.mixture.propose.x_bootstrap_interval__mutmut_17": "numpy reads any negative size "
    "in reshape as 'the rest'",
    "olmotrain.mixture.propose.x_bootstrap_interval__mutmut_21": "as bootstrap_interval__mutmut_4 "
    "(the proposal)",
    "olmotrain.mixture.propose.x_bootstrap_interval__mutmut_23": "as bootstrap_interval__mutmut_21",
    "olmotrain.mixture.propose.x_bootstrap_interval__mutmut_32": "only the trees take a seed, and "
    "they neither bag nor sample features (deterministic): every seed grows the same trees",
    "olmotrain.mixture.propose.x_bootstrap_interval__mutmut_37": "as bootstrap_interval__mutmut_32",
    "olmotrain.mixture.propose.x_bootstrap_interval__mutmut_43": "as bootstrap_interval__mutmut_32",
    "olmotrain.mixture.propose.x_bootstrap_interval__mutmut_49": "as bootstrap_interval__mutmut_32",
    "olmotrain.mixture.propose.x_candidate_mixes__mutmut_6": "Constraints fills a missing prior "
    "with the uniform one",
    "olmotrain.mixture.propose.x_candidate_mixes__mutmut_10": "as candidate_mixes__mutmut_6",
    "olmotrain.mixture.propose.x_candidate_mixes__mutmut_12": "the draws use the anchor, which "
    "normalises the prior: any constant prior is the uniform one",
    "olmotrain.mixture.propose.x_candidate_mixes__mutmut_13": "as candidate_mixes__mutmut_12",
    "olmotrain.mixture.propose.x_propose_from_table__mutmut_79": "as bootstrap_interval__mutmut_32",
    "olmotrain.mixture.propose.x_propose_from_table__mutmut_84": "as bootstrap_interval__mutmut_32",
    "olmotrain.mixture.propose.x_propose_from_table__mutmut_108": "without the warm start the "
    "interval fits the same model again (same runs, same seed): the same refits, only slower",
    "olmotrain.mixture.propose.x_propose_from_table__mutmut_117": "as "
    "propose_from_table__mutmut_108",
    "olmotrain.mixture.propose.x_propose_from_table__mutmut_159": "sources and the proposal have "
    "one entry per source: zip's strictness never acts",
    "olmotrain.mixture.propose.x_propose_from_table__mutmut_162": "as "
    "propose_from_table__mutmut_159",
    "olmotrain.mixture.propose.x_propose_from_table__mutmut_163": "as "
    "propose_from_table__mutmut_159",
    "olmotrain.mixture.propose.x_propose_from_table__mutmut_178": "as "
    "propose_from_table__mutmut_159 (the prior)",
    "olmotrain.mixture.propose.x_propose_from_table__mutmut_181": "as "
    "propose_from_table__mutmut_159",
    "olmotrain.mixture.propose.x_propose_from_table__mutmut_182": "as "
    "propose_from_table__mutmut_159",
    "olmotrain.mixture.propose.x_propose_from_table__mutmut_189": "as "
    "propose_from_table__mutmut_159 (the caps)",
    "olmotrain.mixture.propose.x_propose_from_table__mutmut_192": "as "
    "propose_from_table__mutmut_159",
    "olmotrain.mixture.propose.x_propose_from_table__mutmut_193": "as "
    "propose_from_table__mutmut_159",
    "olmotrain.mixture.propose.x__repetition__mutmut_4": "as propose_from_table__mutmut_159",
    "olmotrain.mixture.propose.x__repetition__mutmut_7": "as propose_from_table__mutmut_159",
    "olmotrain.mixture.propose.x__repetition__mutmut_8": "as propose_from_table__mutmut_159",
    "olmotrain.mixture.propose.x_round_feasible__mutmut_8": "the weights are float arrays already",
    "olmotrain.mixture.propose.x_round_feasible__mutmut_10": "as round_feasible__mutmut_8",
    "olmotrain.mixture.propose.x_round_feasible__mutmut_22": "a weight on (or a hair under) a "
    "grid point floors one unit lower; its remainder, ~1, is the largest, so the unit comes back "
    "to it",
    "olmotrain.mixture.propose.x_round_feasible__mutmut_25": "a fixed source's cap is its weight, "
    "and the loop never looks at a fixed source's room",
    "olmotrain.mixture.propose.x_round_feasible__mutmut_26": "the loop never looks at a fixed "
    "source's room",
    "olmotrain.mixture.propose.x_round_feasible__mutmut_31": "as round_feasible__mutmut_26",
    "olmotrain.mixture.propose.x_round_feasible__mutmut_45": "with nothing left the loop stops "
    "before its first step",
    "olmotrain.mixture.propose.x_round_feasible__mutmut_58": "numpy reads the sort kind "
    "case-insensitively",
    "olmotrain.mixture.propose.x_round_feasible__mutmut_68": "step is +1 or -1, never 0",
    "olmotrain.mixture.propose.xǁProposalǁto_json__mutmut_32": "as "
    "propose_from_table__mutmut_159 (the rounded proposal)",
    "olmotrain.mixture.propose.xǁProposalǁto_json__mutmut_35": "as propose_from_table__mutmut_159",
    "olmotrain.mixture.propose.xǁProposalǁto_json__mutmut_36": "as propose_from_table__mutmut_159",
    "olmotrain.mixture.propose.xǁProposalǁto_json__mutmut_49": "_finite(None) is None",
    # ladder/fit.py
    "olmotrain.ladder.fit.x__holdout__mutmut_2": "with 3 sizes the fit without the largest has 2 "
    "points and extrapolate returns None: the guard only saves that work",
    "olmotrain.ladder.fit.x_check_metric__mutmut_39": "difflib's default n is 3",
    "olmotrain.ladder.fit.x_extrapolate__mutmut_15": "final_points' other columns (mix, size, "
    "num_params, flops) are in every collected row: only value can be missing",
    "olmotrain.ladder.fit.x_fit_ladder__mutmut_33": "as extrapolate__mutmut_15",
    "olmotrain.ladder.fit.x_final_points__mutmut_2": "keeping the old index as a column changes "
    "no column that is aggregated",
    "olmotrain.ladder.fit.x_final_points__mutmut_3": "as final_points__mutmut_2",
    "olmotrain.ladder.fit.x_final_points__mutmut_22": "the points are sorted by mix and compute "
    "right after: the groups' order does not survive",
    "olmotrain.ladder.fit.x_final_points__mutmut_24": "as final_points__mutmut_22",
    "olmotrain.ladder.fit.x_final_points__mutmut_29": "as final_points__mutmut_22",
    "olmotrain.ladder.fit.x_fit_ladder__mutmut_26": "final_points sorted the rows by mix: first "
    "appearance and sorted order agree",
    "olmotrain.ladder.fit.x_fit_ladder__mutmut_28": "as fit_ladder__mutmut_26",
    "olmotrain.ladder.fit.x_fit_ladder__mutmut_31": "as fit_ladder__mutmut_26",
    "olmotrain.ladder.fit.x_task_loss_column__mutmut_6": "only the task ([0]) is used",
    "olmotrain.ladder.fit.xǁSigmoidǁ__call____mutmut_10": "loss minus the float L0 is float "
    "whatever the array's dtype",
    "olmotrain.ladder.fit.xǁSigmoidǁ__call____mutmut_12": "as Sigmoid.__call____mutmut_10",
    "olmotrain.ladder.fit.x_fit_chinchilla__mutmut_3": "integer arrays give the same logs and "
    "minimum as float ones",
    "olmotrain.ladder.fit.x_fit_chinchilla__mutmut_5": "as fit_chinchilla__mutmut_3",
    "olmotrain.ladder.fit.x_fit_power_law__mutmut_7": "as fit_chinchilla__mutmut_3",
    "olmotrain.ladder.fit.x_fit_power_law__mutmut_9": "as fit_chinchilla__mutmut_3",
    "olmotrain.ladder.fit.x_fit_sigmoid__mutmut_3": "as fit_chinchilla__mutmut_3 (ptp, median and "
    "min of integers agree)",
    "olmotrain.ladder.fit.x_fit_sigmoid__mutmut_5": "as fit_sigmoid__mutmut_3",
    "olmotrain.ladder.fit.x_fit_sigmoid__mutmut_7": "as fit_sigmoid__mutmut_3",
    "olmotrain.ladder.fit.x_fit_sigmoid__mutmut_9": "as fit_sigmoid__mutmut_3",
    "olmotrain.ladder.fit.x_fit_chinchilla__mutmut_56": "one evaluation more than 5,000: the fits "
    "converge long before",
    "olmotrain.ladder.fit.x_fit_sigmoid__mutmut_64": "as fit_chinchilla__mutmut_56",
    "olmotrain.ladder.fit.x_fit_power_law__mutmut_115": "as fit_chinchilla__mutmut_56",
    "olmotrain.ladder.fit.x_fit_power_law__mutmut_118": "as fit_chinchilla__mutmut_56 (201 for a "
    "warm refit)",
    "olmotrain.ladder.fit.x_fit_power_law__mutmut_42": "the clip only avoids an overflow warning: "
    "exp of a large argument is inf and 1 / (1 + inf) is 0, the clipped value to double "
    "precision; of a very negative one 0, and the share 1",
    "olmotrain.ladder.fit.x_fit_power_law__mutmut_43": "as fit_power_law__mutmut_42",
    "olmotrain.ladder.fit.x_fit_power_law__mutmut_51": "as fit_power_law__mutmut_42",
    "olmotrain.ladder.fit.x_fit_power_law__mutmut_52": "as fit_power_law__mutmut_42",
    "olmotrain.ladder.fit.x_fit_sigmoid__mutmut_31": "a / (1 + e^50) is within 2e-22 of 0: "
    "clipped at 50 or not (or at 51), the residuals agree to double precision",
    "olmotrain.ladder.fit.x_fit_sigmoid__mutmut_32": "as fit_sigmoid__mutmut_31",
    "olmotrain.ladder.fit.x_fit_sigmoid__mutmut_40": "as fit_sigmoid__mutmut_31",
    "olmotrain.ladder.fit.x_fit_sigmoid__mutmut_41": "as fit_sigmoid__mutmut_31",
    # mixture/propose.py (continued)
    "olmotrain.mixture.propose.x__refine__mutmut_57": "the bounds are one per free source, from "
    "two arrays of that length: zip's strictness never acts",
    "olmotrain.mixture.propose.x__refine__mutmut_60": "as _refine__mutmut_57",
    "olmotrain.mixture.propose.x__refine__mutmut_61": "as _refine__mutmut_57",
    "olmotrain.mixture.propose.x_propose__mutmut_24": "numpy reads the sort kind "
    "case-insensitively",
    # data/tokens.py
    "olmotrain.data.tokens.x_check_token_files__mutmut_6": "an empty digest is falsy as None is: "
    "no digest to compare either way",
    "olmotrain.data.tokens.x_check_token_files__mutmut_21": "a key with its fields in another "
    "order only checks a tokenizer once more; the check's outcome is the same",
    "olmotrain.data.tokens.x_check_token_files__mutmut_23": "as check_token_files__mutmut_21",
    "olmotrain.data.tokens.x_check_token_files__mutmut_26": "as check_token_files__mutmut_21",
    "olmotrain.data.tokens.x_check_token_files__mutmut_30": "as check_token_files__mutmut_21: "
    "every manifest is checked every time",
    "olmotrain.data.tokens.x_scan_token_file__mutmut_34": "an empty file reads no chunk: its "
    "maximum (-1) and digest do not depend on the dtype",
    "olmotrain.data.tokens.x_scan_token_file__mutmut_36": "as scan_token_file__mutmut_34",
    "olmotrain.data.tokens.x_scored_targets__mutmut_16": "with no EOS at most one token is left, "
    "and a document's first token is never scored",
}
"""Mutant name -> why no result can change (kept out of the score). Names are mutmut's: they
follow the order of mutations inside each function, so an edit to a function renumbers its
mutants; re-check this list when a target's function changes."""
GOAL = 0.90


def scratch_copy(where: Path) -> Path:
    """The tree git tracks (and the built data the tests use), copied to ``where``."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout
    for rel in files.split():
        src = ROOT / rel
        if src.is_file():
            dst = where / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    (where / "data").symlink_to(ROOT / "data")
    return where


def configure(tree: Path, module: str, tests: list[str]) -> None:
    """mutmut's settings for one target, in the copy's pyproject.toml."""
    pyproject = tree / "pyproject.toml"
    text = re.sub(r"\n\[tool\.mutmut\][^\[]*", "\n", pyproject.read_text())
    text += (
        "\n[tool.mutmut]\n"
        'source_paths = ["src/olmotrain"]\n'
        f"only_mutate = [{json.dumps(module)}]\n"
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q", "-m", "not gpu"]\n'
        'also_copy = ["conf", "train.py", "data", "bench", "scripts"]\n'
        # A mutant that loops (a bound off by one in a while) is a kill after 3x the clean
        # run's time, not after mutmut's default 15x (a quarter of an hour per such mutant here).
        "timeout_multiplier = 3.0\n"
    )
    pyproject.write_text(text)


def results(tree: Path) -> dict[str, str]:
    """``{mutant: status}`` from ``mutmut results --all true``."""
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=tree, capture_output=True, text=True,
    ).stdout  # fmt: skip
    found = {}
    for line in out.splitlines():
        if ":" in line:
            name, status = line.rsplit(":", 1)
            found[name.strip()] = status.strip()
    return found


def _prefix(module: str) -> str:
    """mutmut's name prefix for the mutants of ``module`` (``olmotrain.ladder.fit.x``)."""
    return module.removeprefix("src/").removesuffix(".py").replace("/", ".") + ".x"


def run_target(name: str, keep: bool) -> dict:
    module, tests = TARGETS[name]
    start = time.perf_counter()
    base = Path(tempfile.mkdtemp(prefix=f"olmotrain-mutation-{name}-"))
    tree = scratch_copy(base / "repo")
    configure(tree, module, tests)
    # The mutants shadow the editable install; the directory must exist before Python starts,
    # or the import system caches it as missing and the tests import the unmutated package.
    (tree / "mutants" / "src").mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tree / "mutants" / "src")}
    with (base / "mutmut.log").open("w") as log:  # mutmut's own output, kept with --keep
        done = subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(os.cpu_count() or 2)],
            cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    if done.returncode != 0:  # e.g. the clean tests fail: no score would mean anything
        tail = (base / "mutmut.log").read_text(errors="replace").strip().splitlines()[-1:]
        raise SystemExit(
            f"error: mutmut failed on {name} (exit {done.returncode}): {' '.join(tail)[:300]}; "
            f"see {base / 'mutmut.log'} (are the target's tests tracked by git?)"
        )
    every = results(tree)
    found = {m: s for m, s in every.items() if m not in EQUIVALENT}
    listed = [m for m in EQUIVALENT if m.startswith(_prefix(module))]
    # A listed mutant the tests kill is no equivalent; one not produced is a stale name (an
    # edit renumbered the function's mutants): both mean the list needs a look.
    stale = sorted(m for m in listed if every.get(m, "killed") in ("killed", "timeout"))
    killed = sum(s in ("killed", "timeout") for s in found.values())
    survivors = sorted(m for m, s in found.items() if s == "survived")
    score = killed / len(found) if found else None
    if not keep:
        shutil.rmtree(base, ignore_errors=True)
    return {
        "module": module, "mutants": len(found), "killed": killed, "score": score,
        "equivalent": len(listed) - len(stale), "stale_equivalent": stale,
        "survivors": survivors, "seconds": round(time.perf_counter() - start, 1),
        "other": sorted({s for s in found.values()} - {"killed", "timeout", "survived"}),
        "scratch": str(tree) if keep else None,
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated targets: " + ", ".join(TARGETS))
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        print(
            f"error: unknown target {unknown[0]}; choose from {', '.join(TARGETS)}", file=sys.stderr
        )
        return 2
    report = {}
    for name in names:
        r = report[name] = run_target(name, args.keep)
        score = "-" if r["score"] is None else f"{r['score']:.1%}"
        print(f"{name:<12} {r['killed']:>4}/{r['mutants']:<4} killed  {score:>6}  "
              f"(+{r['equivalent']} equivalent, {r['seconds']:.0f} s)"
              f"{'  ' + ' '.join(r['other']) if r['other'] else ''}")  # fmt: skip
        for m in r["survivors"]:
            print(f"    survived: {m}")
        for m in r["stale_equivalent"]:
            print(f"    listed as equivalent but killed or not produced (check EQUIVALENT): {m}")
    if args.json:
        print(json.dumps(report))
    low = [n for n, r in report.items() if r["score"] is not None and r["score"] < GOAL]
    print(f"below {GOAL:.0%}: {', '.join(low)}" if low else f"every module >= {GOAL:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
