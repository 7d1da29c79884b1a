"""The plan: everything a run will do, derived once from its typed config (:func:`derive_plan`),
before any expensive work; written to ``RUN_DIR/plan.json`` and read back from there."""

from olmotrain.plan.derive import derive_plan
from olmotrain.plan.plan import PLAN_FILE, Evaluation, Plan, load_plan, save_plan

__all__ = ["PLAN_FILE", "Evaluation", "Plan", "derive_plan", "load_plan", "save_plan"]
