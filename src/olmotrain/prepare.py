"""``python -m olmotrain.prepare``: text -> olmo-core token files (see :mod:`olmotrain.data.prepare`)."""

from olmotrain.data.prepare.__main__ import main
from olmotrain.errors import run_command

if __name__ == "__main__":
    run_command(main)
