"""What the running product tells its operator: Prometheus metrics and structured logs.

A core module (it imports nothing of Chatmeter's), so that the chat turn, the ledger
and the web can all report through it. The figures that need the database (job lag,
the outbox's backlog, the training queue) are computed when Prometheus scrapes, in
``chatmeter.ops.gauges``; nothing here runs a query.
"""
