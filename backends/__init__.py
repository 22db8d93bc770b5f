"""The backends shipped with fencing-coord, one module each, installed as
``fencing_coord.backends.*``. Each registers its URL scheme in the
``fencing_coord.backends`` entry-point group; import them through
:func:`fencing_coord.connect`, which reports a missing extra clearly."""
