"""Operating Chatmeter: readiness, the figures Prometheus scrapes, and ``chatmeter doctor``.

An application-layer package: it reads the database's tables of several domains
(jobs, outbox, training) and probes the outside systems (database, Redis, SMTP,
models), so that the adapters (``web``, ``cli``) only present what it finds.
"""
