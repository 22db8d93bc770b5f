"""``python -m fencing_coord.cli``: the same as the ``fencing-coord`` console script."""

from . import console_main

console_main()
