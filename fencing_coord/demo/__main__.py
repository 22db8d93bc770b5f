"""``python -m fencing_coord.demo holder|successor ...``: one participant of the scenario."""

import sys

from .actor import child_main

sys.exit(child_main(sys.argv[1:]))
