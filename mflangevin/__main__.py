"""``python -m mflangevin`` runs the main demo."""

import sys

from mflangevin.cli import main

sys.exit(main())
