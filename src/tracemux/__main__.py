"""``python -m tracemux`` runs the command line."""

import sys

from tracemux.cli.main import main

sys.exit(main())
