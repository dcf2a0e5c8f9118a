"""HTTP parts that every adapter may use, the REST API, the widget and the panel alike:
body limits, streamed uploads, the client's address, Server-Sent Events."""
