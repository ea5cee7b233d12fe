"""``python -m cifarlab ...`` works like the ``cifarlab`` command."""

import sys

from cifarlab.cli import main

sys.exit(main())
