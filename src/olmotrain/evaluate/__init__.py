"""Evaluating a saved checkpoint (``python -m olmotrain.evaluate``): the command
(:mod:`olmotrain.evaluate.__main__`) and the evaluation it runs (:mod:`olmotrain.evaluate.checkpoint`).

The evaluators themselves (held-out CE/PPL/BPB, downstream tasks) are the ones training carries,
in :mod:`olmotrain.eval`; like export and generate, this command takes a run dir, a checkpoint or
``--step N`` (:func:`olmotrain.train.rundir.find_checkpoint`)."""
