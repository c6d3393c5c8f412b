"""Dependencies the routes ask for; tests override them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import sessionmaker

from pestid.serving.accounts import user_for_token
from pestid.serving.db import User
from pestid.serving.model import LoadedModel, OfflineModel
from pestid.serving.photos import PhotoStorage
from pestid.serving.problems import Problem
from pestid.serving.settings import Settings, get_settings
from pestid.vocabulary import RANK

__all__ = [
    "bearer_token",
    "current_user",
    "get_model",
    "get_photo_store",
    "get_sessions",
    "get_settings",
    "require",
]


def get_model(request: Request) -> LoadedModel:
    model: LoadedModel | None = getattr(request.app.state, "model", None)
    if model is None:
        raise Problem(503, "model_not_loaded", "Mô hình chưa sẵn sàng, vui lòng thử lại sau.",
                      "The model is not loaded yet; try again shortly.")  # fmt: skip
    return model


def get_offline(request: Request) -> OfflineModel:
    offline: OfflineModel | None = getattr(request.app.state, "offline", None)
    if offline is None:
        raise Problem(404, "offline_unavailable", "Máy chủ chưa có mô hình dùng ngoại tuyến.",
                      "The server has no offline model (export one with 'pestid export --int8').")  # fmt: skip
    return offline


def get_sessions(request: Request) -> sessionmaker:
    return request.app.state.sessions


def get_photo_store(request: Request) -> PhotoStorage:
    return request.app.state.photos


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, if the request has one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def current_user(request: Request) -> User:
    """The signed-in officer or admin (bearer token), or 401."""
    token = bearer_token(request)
    user = None
    if token:
        with get_sessions(request)() as session:
            user = user_for_token(session, token)
    if user is None:
        raise Problem(401, "unauthenticated", "Hãy đăng nhập bằng tài khoản cán bộ.",
                      "Sign in with an officer account.")  # fmt: skip
    return user


def require(role: str) -> Callable[[User], User]:
    """A dependency that lets in ``role`` and the roles above it, and answers 403 to the rest."""

    def check(user: Annotated[User, Depends(current_user)]) -> User:
        if RANK[user.role] < RANK[role]:
            raise Problem(403, "forbidden", f"Tài khoản này không có quyền ({role}).",
                          f"This account lacks the '{role}' role.")  # fmt: skip
        return user

    return check


def settings_dep(request: Request) -> Settings:
    return request.app.state.settings
