"""``python -m ssl_bench.cli`` (as torchrun starts it)."""

import sys

from ssl_bench.cli import script

sys.exit(script())
