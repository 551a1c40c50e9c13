"""``python -m usseg_monai.cli``: the ``usseg`` command."""

import sys

from usseg_monai.cli import main

sys.exit(main())
