"""``python -m tracemux.bench``: the same as ``tracemux bench``."""

import sys

from tracemux.cli.bench import main

sys.exit(main())
