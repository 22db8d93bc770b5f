"""``python -m fencing_coord.cli``: the same as the ``fencing-coord`` console script."""

import sys

from . import main

sys.exit(main())
