"""The assistants pages: settings, training files, test chat, embed snippet, conversations."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/panel", include_in_schema=False)
