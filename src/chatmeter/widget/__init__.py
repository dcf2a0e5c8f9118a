"""The embeddable chat widget: its script (``widget.js``) and the rule for where it may run."""
