"""Dependencies the routes ask for; tests override them."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.orm import sessionmaker

from serving.model import LoadedModel
from serving.photos import PhotoStore
from serving.problems import Problem
from serving.settings import Settings, get_settings

__all__ = ["get_model", "get_photo_store", "get_sessions", "get_settings", "request_language"]


def get_model(request: Request) -> LoadedModel:
    model: LoadedModel | None = getattr(request.app.state, "model", None)
    if model is None:
        raise Problem(503, "model_not_loaded", "Mô hình chưa sẵn sàng, vui lòng thử lại sau.",
                      "The model is not loaded yet; try again shortly.")  # fmt: skip
    return model


def get_sessions(request: Request) -> sessionmaker:
    return request.app.state.sessions


def get_photo_store(request: Request) -> PhotoStore:
    return request.app.state.photos


def request_language(request: Request) -> str:
    """``?lang=`` first, then Accept-Language; Vietnamese by default."""
    lang = request.query_params.get("lang")
    if lang in ("vi", "en"):
        return lang
    for item in request.headers.get("accept-language", "").split(","):
        code = item.split(";")[0].strip().lower()[:2]
        if code in ("vi", "en"):
            return code
    return "vi"


def settings_dep(request: Request) -> Settings:
    return request.app.state.settings
