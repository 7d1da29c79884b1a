"""Model ladders and DataDecide: sizes x data mixes trained as one resumable sweep, their
checkpoints' metrics collected into one table, scaling laws fitted, mixes ranked.

:mod:`.config` (what a ladder is), :mod:`.ladder` (points, run dirs, checkpoints, metrics;
running them), :mod:`.collect` (the table), :mod:`.fit` (scaling laws), :mod:`.decide`
(rankings, decision accuracy), :mod:`.report` (the page and its pictures), ``__main__``.
"""

from olmotrain.ladder.ladder import Ladder, RunCheckpointInfo

__all__ = ["Ladder", "RunCheckpointInfo"]
