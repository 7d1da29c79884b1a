"""``python -m olmotrain.status DIR``: where each run stands (see :mod:`olmotrain.launch.status`)."""

from olmotrain.errors import run_command
from olmotrain.launch.status import main

if __name__ == "__main__":
    run_command(main)
