"""``python -m ajan`` is the ``ajan`` command."""

from __future__ import annotations

import sys

from ajan.cli import main

sys.exit(main())
