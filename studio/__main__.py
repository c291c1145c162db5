"""`python -m studio <verb>`: the command line (serve, generate, models, dataset, mine, train, animal, evaluate)."""

import sys

from studio.cli import main

sys.exit(main())
