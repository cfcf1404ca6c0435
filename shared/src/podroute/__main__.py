"""`python -m podroute` runs the `podroute` command."""

import sys

from podroute.cli import main

sys.exit(main())
