"""``python -m ferkit ...``: the same as the ``ferkit`` command (e.g. where its script is not on PATH)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
