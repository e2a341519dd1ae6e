"""Runs the compressor: `python -m services.compressor`."""

import sys

from services.compressor.server import main

sys.exit(main())
