"""Runs the simulator: `python -m services.simulator [REPLAY_DIR]`."""

import sys

from services.simulator.server import main

main(sys.argv[1:])
