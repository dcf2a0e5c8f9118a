"""``python -m chatmeter.cli``."""

from chatmeter.cli import main

main()
