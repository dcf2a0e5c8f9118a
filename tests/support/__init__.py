"""Helpers shared by the test packages; ``conftest.py`` files hold fixtures and hooks only.

- ``accounts``: accounts with their subscription, tokens given and spent, balances
- ``ledger``: the two ledger checks, clean and settled
- ``api``: accounts calling the REST API with their own key
- ``context``: the tests' clock start, contexts with other settings
- ``panel``: a browser-like client for the panel (cookies, CSRF)
- ``cli``: the operator's CLI, in-process
- ``browser``, ``website``: the browser tests' visit and screenshots, a customer's site
- ``live``: the app under uvicorn on a loopback port
- ``llm``: the question asked of the bundled model, llama.cpp's OpenAI-compatible server
- ``net``: free loopback ports
- ``wait``: waiting for an observable condition
- ``aio``: running a coroutine whatever loop the thread holds
- ``tiers``: the guard that keeps the ``model`` marker true
"""
