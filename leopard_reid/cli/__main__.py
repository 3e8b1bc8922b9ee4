"""``python -m leopard_reid.cli``: the ``leopard-reid`` command."""

import sys

from . import main

sys.exit(main())
