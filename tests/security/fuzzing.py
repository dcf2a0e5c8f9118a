"""Property-based fuzzing of the REST API from its own OpenAPI schema, with schemathesis.

``fuzz`` runs schemathesis's engine (what ``schemathesis run`` runs) in-process
against the ASGI app: the schema's examples, the coverage phase (boundary and
invalid values of every parameter and field), random valid and invalid requests
for every operation, then the stateful phase along the links it infers from the
schema (create an assistant, then read, change, upload to and delete it; reserve
tokens, then settle or release the hold...). The budget is fixed (examples per
operation, steps per scenario) and generation is derandomized with a fixed seed,
so every run sends the same requests.

The checks: the built-in schema conformance of every declared response and
rejection of invalid data, use-after-free and resource availability in the
stateful phase, and two of Chatmeter's own (``refusals_only``): never a 500,
another 5xx only where the operation documents it, and every 4xx the JSON error
``{"error": {"code", "message"}}``.

The engine's module is schemathesis's own runner rather than its documented
pytest plugin, whose lazy fixture loading does not run under pytest 9; the
version is pinned in pyproject.toml.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from fastapi import FastAPI
from schemathesis.engine import StopReason, events, from_schema

SEED = 20261206
# Values that broke something once, mixed into the generated text and numbers: the
# NUL that PostgreSQL cannot store, ids beyond 64 bits, text that is not ASCII.
AWKWARD_TEXT = ["\x00", "Opening\x00hours", "%00", "é", "🙂", "\u202e", " ", "pk_\x00"]
AWKWARD_NUMBERS = [2**63, -(2**63) - 1, 10**30, 0, -1]
# The built-in checks that hold for this API. Not enabled: status_code_conformance and
# positive_data_acceptance (the schema does not list every 404/409, nor can it say
# which time zones or domains exist), allow_header_conformance (Starlette answers a
# wrong method on a path with two routes with the first route's methods only).
BUILT_IN_CHECKS = (
    "response_schema_conformance",
    "content_type_conformance",
    "negative_data_rejection",
    "use_after_free",
    "ensure_resource_availability",
)


def _documented(case: Any, status: int) -> dict[str, Any] | None:
    """The operation's declared response for ``status``, if it declares one."""
    responses = case.operation.definition.raw.get("responses", {})
    declared = responses.get(str(status))
    return declared if isinstance(declared, dict) else None


def _json_error(response: Any) -> dict[str, Any] | None:
    try:
        body = json.loads(response.content or b"null")
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not {"code", "message"} <= error.keys():
        return None
    return error if isinstance(error["code"], str) and isinstance(error["message"], str) else None


@schemathesis.check
def refusals_only(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 500; a 5xx only where documented (the visitor's 503 "unavailable"); every
    4xx and 5xx a JSON error with a code and a message, except a response the
    schema declares without a body (the widget's empty 404 for an unknown key)."""
    status = response.status_code
    if status < 400:
        return None
    if status == 500:
        raise AssertionError(f"500 Internal Server Error: {response.content[:300]!r}")
    declared = _documented(case, status)
    if status >= 500 and declared is None:
        raise AssertionError(f"undocumented {status}: {response.content[:300]!r}")
    if declared is not None and "content" not in declared and not response.content:
        return None  # documented as an empty answer
    if _json_error(response) is None:
        raise AssertionError(
            f'{status} is not {{"error": {{"code", "message"}}}}: {response.content[:300]!r}'
        )
    return None


@dataclass
class Report:
    requests: int = 0
    operations: set[str] = field(default_factory=set)
    phases: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: str = ""


def fuzz(app: FastAPI, api_key: str, *, examples: int, steps: int) -> Report:
    """Fuzz every operation of ``app``'s API as the holder of ``api_key``."""
    checks: dict[str, Any] = {"enabled": False, "refusals_only": {"enabled": True}}
    checks |= {name: {"enabled": True} for name in BUILT_IN_CHECKS}
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": {"Authorization": f"Bearer {api_key}"},
            "dictionaries": {
                "awkward_text": {"values": AWKWARD_TEXT},
                "awkward_numbers": {"values": AWKWARD_NUMBERS},
            },
            "generation": {
                "max-examples": examples,
                "deterministic": True,
                "database": "none",
                "dictionaries": {
                    "string": {"dictionary": "awkward_text", "probability": 0.25},
                    "integer": {"dictionary": "awkward_numbers", "probability": 0.25},
                },
            },
            "phases": {"stateful": {"max-steps": steps}},
            "checks": checks,
        }
    )
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app, config=config)
    report = Report()
    for event in from_schema(schema).execute():
        if isinstance(event, events.PhaseStarted):
            report.phases.append(event.phase.name.value)
        elif isinstance(event, events.ScenarioFinished):
            _record(report, event)
        elif isinstance(event, events.NonFatalError | events.FatalError):
            _record_error(report, event)
        elif isinstance(event, events.EngineFinished):
            report.stop = event.stop_reason.value
    if report.stop != StopReason.COMPLETED.value:
        report.failures.append(f"the run stopped early: {report.stop}")
    return report


def _record_error(report: Report, event: Any) -> None:
    """An exception the app raised (the test client passes it on): once per operation
    and kind, with a request that reproduces it."""
    label = getattr(event, "label", "the engine")
    first = f"{label}: {type(event.value).__name__}: {str(event.value).splitlines()[0][:200]}"
    if not any(f.startswith(first[:80]) for f in report.failures):
        report.failures.append(f"{first}\n    {event.info.code_sample or ''}".rstrip())


def _record(report: Report, event: Any) -> None:
    recorder = event.recorder
    report.requests += len(recorder.interactions)
    report.operations |= {node.value.operation.label for node in recorder.cases.values()}
    seen = set()
    for nodes in recorder.checks.values():
        for node in nodes:
            info = node.failure_info
            if info is None or (node.name, info.failure.title) in seen:
                continue
            seen.add((node.name, info.failure.title))
            report.failures.append(
                f"{recorder.label} [{node.name}] {info.failure.title}: "
                f"{info.failure.message.strip()}\n    {info.code_sample}"
            )
