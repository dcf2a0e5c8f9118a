"""The control panel: server-rendered pages for the customer, reached after sign-in."""
