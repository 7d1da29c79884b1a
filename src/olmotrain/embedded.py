"""``python -m olmotrain.embedded``: build the offline embedded dataset (see :mod:`olmotrain.data.embedded`)."""

import logging

from olmotrain.data.embedded import main
from olmotrain.errors import run_command

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_command(main)
