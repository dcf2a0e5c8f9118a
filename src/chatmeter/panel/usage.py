"""The usage page: tokens per day by kind and assistant, conversations, CSV."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/panel", include_in_schema=False)
