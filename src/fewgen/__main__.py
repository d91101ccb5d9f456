"""``python -m fewgen`` (also what ``torchrun -m fewgen`` runs)."""

import sys

from .cli import main

sys.exit(main())
