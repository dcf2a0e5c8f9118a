"""Answers a business can trust: grounded in its documents or the fallback, improved by
its own corrections and its visitors' ratings."""
