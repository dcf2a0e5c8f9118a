"""``python -m chatmeter.cli``."""

import sys

from chatmeter.cli import main

sys.exit(main())
