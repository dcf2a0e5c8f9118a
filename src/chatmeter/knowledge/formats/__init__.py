"""One reader per file format; each turns bytes or text into a ``Document``."""
