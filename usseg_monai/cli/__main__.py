"""``python -m usseg_monai.cli``: the ``usseg`` command."""

import sys

from usseg_monai.cli import main

if __name__ == "__main__":
    sys.exit(main())
