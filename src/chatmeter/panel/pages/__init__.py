"""The panel's pages, one router per area, each named for what it shows (``panel.app``)."""
