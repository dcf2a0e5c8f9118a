"""Webhooks for the customer's own systems: signed events about tokens and assistants.

``events`` records what happened (in the transaction that caused it) and writes one
delivery per subscribed endpoint; ``delivery`` posts them from the worker, retrying
with backoff; ``signing`` is the signature receivers check; ``egress`` keeps
deliveries away from the server's own networks; ``endpoints`` is what the owner
manages (the panel, the REST API and the CLI share it).
"""
