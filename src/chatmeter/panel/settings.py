"""The settings page: contact email, time zone, team members; password reset."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/panel", include_in_schema=False)
