"""Officer endpoints: sign-in, the review queue, verdicts, undo, photos, outbreak counts."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pestid.catalogue import load_catalogue
from pestid.errors import CatalogueError, ImageDecodeError
from pestid.serving.accounts import district_scope, login, logout, reserve, settle
from pestid.serving.audits import blind_to
from pestid.serving.db import AuditEntry, Photo, Submission, User, writing
from pestid.serving.deps import bearer_token, get_photo_store, get_sessions, require, settings_dep
from pestid.serving.districts import canonical_district
from pestid.serving.inputs import INT32_MAX, RowId, Text
from pestid.serving.outbreaks import outbreak_counts, to_csv
from pestid.serving.photos import PhotoStorage, PhotoStoreUnavailable
from pestid.serving.precision import judge
from pestid.serving.problems import Problem
from pestid.serving.review import Verdict, queue, record_verdict, undo
from pestid.serving.settings import Settings
from pestid.serving.submissions import media_type, store_unavailable
from pestid.vocabulary import Decision, RejectReason, ReviewStatus, Role

router = APIRouter(prefix="/v1", tags=["review"])
Officer = Annotated[User, Depends(require(Role.officer))]
Senior = Annotated[User, Depends(require(Role.senior))]
Sessions = Annotated[sessionmaker, Depends(get_sessions)]
PREVIEW_SIZES = {"thumbnail": 320, "large": 1600}  # longer side of the JPEG previews officers see


class LoginIn(BaseModel):
    username: Text = Field(max_length=64)
    password: str = Field(max_length=256)  # never stored: hashed as it is


class VerdictIn(BaseModel):
    action: Literal["confirm", "relabel", "reject"]
    label: Text | None = Field(default=None, max_length=64)
    reason: RejectReason | None = None


def _named(label: str | None, probability: float | None = None) -> dict[str, Any] | None:
    """A label as officers read it: its catalogue names (Vietnamese first) and Latin name."""
    if label is None:
        return None
    org = load_catalogue().get(label)
    named: dict[str, Any] = {"id": org.id, "name_vi": org.name_vi, "name_en": org.name_en, "scientific": org.scientific}
    return named if probability is None else {**named, "probability": round(probability, 4)}


def _summary(sub: Submission, reader: User, *, blind: bool = False) -> dict[str, Any]:
    """A submission as officers read it. ``blind`` (an open audit item the reader has not judged, see
    ``audits.blind_to``): nothing of the model's answer is sent (its label, names, confidence and guesses are null
    or empty), and ``audit`` says so; once the reader has judged it, ``audit.answer`` is what the farmer was told.
    A resent photo of a blind item is masked the same way (``audit`` blind, though it is no audit item itself)."""
    guesses = [(a["id"], a["probability"]) for a in sub.response.get("alternatives", []) if "id" in a]
    top = [(sub.predicted_label, sub.confidence), *[g for g in guesses if g[0] != sub.predicted_label]][:3]
    summary = {"id": sub.id, "created_at": sub.created_at.isoformat(), "status": sub.status, "decision": sub.decision,
               "predicted_label": sub.predicted_label, "predicted": _named(sub.predicted_label),
               "confidence": round(sub.confidence, 4), "top": [_named(label, p) for label, p in top],
               "final_label": sub.final_label, "final": _named(sub.final_label), "commune": sub.commune,
               "district": sub.district, "latitude": sub.latitude, "longitude": sub.longitude,
               "observed_on": sub.observed_on.isoformat() if sub.observed_on else None, "note": sub.note,
               "duplicate_of": sub.duplicate_of, "photo_count": len(sub.photos),
               "photos": [f"/v1/submissions/{sub.id}/photos/{p.position}" for p in sub.photos],
               "previews": [{size: f"/v1/submissions/{sub.id}/photos/{p.position}/{size}" for size in PREVIEW_SIZES}
                            for p in sub.photos]}  # fmt: skip
    if sub.district is None and reader.role == Role.officer:
        # every district's officers see the unlocated: where the farmer stood and what they wrote stay with seniors
        summary.update(latitude=None, longitude=None, note=None)
    shown = None if blind else _named(sub.answer)
    summary["audit"] = None if sub.audit_rate is None and not blind else {"blind": blind, "answer": shown}
    if blind:
        summary.update(predicted_label=None, predicted=None, confidence=None, top=[])
    return summary


def _summaries(session: Session, subs: list[Submission], reader: User) -> list[dict[str, Any]]:
    blind = blind_to(session, reader, subs)
    return [_summary(s, reader, blind=s.id in blind) for s in subs]


def _visible(session: Session, user: User, submission_id: str, *, for_update: bool = False) -> Submission | None:
    """The submission, if it is within the user's districts (``district_scope``, the one rule for reads and writes);
    ``for_update`` locks its row until the transaction ends (PostgreSQL; SQLite's writers already take turns), so two
    verdicts on one submission are judged one after the other, each seeing the other's review."""
    query = select(Submission).where(Submission.id == submission_id, district_scope(user))
    return session.scalars(query.with_for_update() if for_update else query).first()


@router.post("/auth/login", responses={401: {}, 429: {}})
def sign_in(body: LoginIn, request: Request, sessions: Sessions) -> dict[str, str]:
    address = request.client.host if request.client else "unknown"
    with writing(sessions) as session:  # counted before any hashing, atomically: see accounts.reserve
        wait = reserve(session, body.username, address)
    if wait > 0:  # answered before any hashing: a flood of guesses costs no argon2 work
        minutes = max(1, math.ceil(wait / 60))
        raise Problem(429, "too_many_attempts", f"Đăng nhập sai quá nhiều lần; hãy thử lại sau {minutes} phút.",
                      f"Too many failed sign-ins; try again in {minutes} min.", retry_after_s=math.ceil(wait),
                      headers={"Retry-After": str(math.ceil(wait))})  # fmt: skip
    token = None
    try:
        with request.app.state.hash_slots, sessions() as session, session.begin():  # 64 MB of argon2 per slot
            token = login(session, body.username, body.password)
    finally:
        with writing(sessions) as session:
            settle(session, body.username, address, success=token is not None)
    if token is None:
        raise Problem(401, "bad_credentials", "Sai tên đăng nhập hoặc mật khẩu.", "Wrong username or password.")
    return {"token": token, "token_type": "bearer"}


@router.post("/auth/logout", status_code=204)
def sign_out(request: Request, user: Officer, sessions: Sessions) -> Response:
    """End this sign-in: the token stops working at once."""
    token = bearer_token(request)
    assert token is not None  # ``Officer`` signed in with it
    with sessions() as session, session.begin():
        logout(session, token)
    return Response(status_code=204)


@router.get("/auth/me")
def me(user: Officer) -> dict[str, Any]:
    return {"username": user.username, "role": user.role, "district": user.district}


@router.get("/review/queue")
def review_queue(
    user: Officer, sessions: Sessions, status: Literal[ReviewStatus.pending_review, ReviewStatus.disputed] = ReviewStatus.pending_review,
    district: str | None = None, species: str | None = None, decision: str | None = None,
    since: date | None = None, until: date | None = None, limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=INT32_MAX)] = 0, audit: bool | None = None,
) -> JSONResponse:  # fmt: skip
    """One page of the queue; ``X-Total-Count`` says how many match. ``species`` is an id or a name in either
    language, with or without diacritics. ``audit``: only blind audit items (true) or none (false)."""
    ids = load_catalogue().resolve(species) if species else None
    with sessions() as session:
        rows, total = queue(session, status=status, district=district and (canonical_district(district) or district), species=ids, decision=decision, since=since,
                            until=until, limit=limit, offset=offset, scope=district_scope(user), audit=audit)  # fmt: skip
        return JSONResponse(_summaries(session, rows, user), headers={"X-Total-Count": str(total)})


def _verdict(body: VerdictIn, sub: Submission, *, blind: bool = False) -> Verdict:
    if body.action == "confirm" and blind:
        # a blind audit: the officer has not seen the model's answer, so there is nothing to confirm
        raise Problem(422, "audit_needs_species", "Ảnh kiểm tra mù: hãy chọn loài bạn thấy (phím r) hoặc loại ảnh.",
                      "A blind check: name the species you see (relabel) or reject the photo.")  # fmt: skip
    if body.action == "reject":
        if body.reason is None:
            raise Problem(422, "reason_required", "Hãy chọn lý do loại ảnh.",
                          f"Give a reason to reject: one of {', '.join(RejectReason)}.")  # fmt: skip
        return Verdict("reject", reason=body.reason)
    if body.action == "confirm" and sub.decision != Decision.identified:
        # the model was not sure: confirming would approve a guess (and count it as an outbreak report)
        raise Problem(422, "species_required", "Mô hình chưa chắc chắn: hãy chọn đúng loài (phím r) thay vì xác nhận.",
                      "The model was not sure: choose the species (relabel) instead of confirming its guess.")  # fmt: skip
    label = sub.predicted_label if body.action == "confirm" else body.label
    if not label:
        raise Problem(422, "label_required", "Hãy chọn loài đúng.", "Choose the correct species to relabel.")
    return Verdict("label", label=label)


@router.post("/review/{submission_id}")
def review(submission_id: str, body: VerdictIn, user: Officer, sessions: Sessions,
           settings: Annotated[Settings, Depends(settings_dep)]) -> dict[str, Any]:  # fmt: skip
    with writing(sessions) as session:
        sub = _visible(session, user, submission_id, for_update=True)
        if sub is None:  # another district's submission: as if it did not exist
            raise Problem(404, "unknown_submission", "Không có ảnh gửi này.", "No such submission.")
        if sub.status == ReviewStatus.disputed and user.role == Role.officer:
            raise Problem(403, "senior_needed", "Ảnh đang tranh chấp: cần cán bộ cấp trên.",
                          "This submission is disputed: a senior officer must settle it.")  # fmt: skip
        hidden = sub.id in blind_to(session, user, [sub])  # the model's answer is hidden from this officer
        verdict = _verdict(body, sub, blind=hidden)
        blind = hidden and sub.audit_rate is not None  # the officer's blind answer: what the estimate counts
        try:
            entry = record_verdict(session, sub, user, verdict, required=settings.approvals_required, blind=blind,
                                   action=body.action)  # fmt: skip
        except CatalogueError as exc:
            raise Problem(422, "unknown_label", exc.message_vi, exc.message_en) from None
        summary = {"audit_id": entry.id, **_summaries(session, [sub], user)[0]}
        audit = summary["audit"]
        if sub.audit_rate is not None and sub.answer and not audit["blind"]:  # revealed now: did it match?
            status = ReviewStatus.approved if verdict.kind == "label" else ReviewStatus.rejected
            audit.update(agreed=judge(sub.answer, status, verdict.label, verdict.reason), counted=blind)
        return summary


@router.post("/review/undo/{audit_id}")
def undo_action(audit_id: RowId, user: Officer, sessions: Sessions,
                settings: Annotated[Settings, Depends(settings_dep)]) -> dict[str, Any]:  # fmt: skip
    with writing(sessions) as session:
        entry = session.get(AuditEntry, audit_id)
        target = (_visible(session, user, entry.submission_id, for_update=True)
                  if entry is not None and entry.submission_id else None)  # fmt: skip
        if entry is None or target is None:
            raise Problem(404, "unknown_action", "Không có thao tác này.", "No such action.")
        if entry.user_id != user.id and user.role == Role.officer:
            raise Problem(
                403, "forbidden", "Chỉ hoàn tác được thao tác của mình.", "You can undo only your own actions."
            )
        try:
            done = undo(session, entry, user, required=settings.approvals_required)
        except LookupError:
            raise Problem(
                409, "nothing_to_undo", "Thao tác này đã được hoàn tác.", "This action was already undone."
            ) from None
        return {"audit_id": done.id, **_summaries(session, [target], user)[0]}


@router.get("/audit")
def audit_log(
    user: Senior,
    sessions: Sessions,
    submission_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The latest actions, newest first. On a submission whose model answer is hidden from the reader (a blind audit
    item, ``audits.blind_to``), a confirm reads as a relabel: which label was the model's is not told."""
    with sessions() as session:
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if submission_id:
            query = query.where(AuditEntry.submission_id == submission_id)
        entries = list(session.scalars(query))
        subs = list(session.scalars(select(Submission).where(Submission.id.in_(
            sorted({e.submission_id for e in entries if e.submission_id})))))  # fmt: skip
        blind = blind_to(session, user, subs)
        return [{"id": e.id, "at": e.at.isoformat(), "user_id": e.user_id,
                 "action": "relabel" if e.action == "confirm" and e.submission_id in blind else e.action,
                 "submission_id": e.submission_id, "before": e.before, "after": e.after}
                for e in entries]  # fmt: skip


def _visible_photo(sessions: sessionmaker, user: User, submission_id: str, position: int) -> Photo:
    """The photo, if its submission is within the user's districts; 404 otherwise (as if it did not exist)."""
    with sessions() as session:
        photo = session.scalars(select(Photo).join(Submission, Submission.id == Photo.submission_id)
                                .where(Photo.submission_id == submission_id, Photo.position == position,
                                       district_scope(user))).first()  # fmt: skip
    if photo is None:
        raise Problem(404, "unknown_photo", "Không có ảnh này.", "No such photo.")
    return photo


def _sent(found: Path | bytes, kind: str, headers: dict[str, str]) -> Response:
    """A stored photo or preview as the store gives it: a local file, or bytes from a bucket."""
    if isinstance(found, bytes):
        return Response(found, media_type=kind, headers=headers)
    return FileResponse(found, media_type=kind, headers=headers)


@router.get("/submissions/{submission_id}/photos/{position}")
def submission_photo(submission_id: str, position: RowId, user: Officer, sessions: Sessions,
                     store: Annotated[PhotoStorage, Depends(get_photo_store)]) -> Response:  # fmt: skip
    photo = _visible_photo(sessions, user, submission_id, position)
    try:
        found = store.original(photo.path)
    except PhotoStoreUnavailable:
        raise store_unavailable() from None
    name = photo.path.rsplit("/", 1)[-1]  # <position>.<extension>: nothing to quote
    return _sent(found, media_type(photo.path), {"Content-Disposition": f'inline; filename="{name}"'})


@router.get("/submissions/{submission_id}/photos/{position}/{size}", responses={404: {}})
def submission_preview(submission_id: str, position: RowId, size: Literal["thumbnail", "large"], user: Officer,
                       sessions: Sessions, store: Annotated[PhotoStorage, Depends(get_photo_store)]) -> Response:  # fmt: skip
    """A JPEG preview of a stored photo (HEIC included), made on first request and kept in the store."""
    photo = _visible_photo(sessions, user, submission_id, position)
    try:
        preview = store.preview(photo.path, PREVIEW_SIZES[size])
    except ImageDecodeError:  # stored, but no preview can be made of it: the original is still there
        raise Problem(422, "unreadable_photo", "Không tạo được ảnh xem trước; hãy mở ảnh gốc.",
                      "No preview can be made of this photo; open the original.") from None  # fmt: skip
    except PhotoStoreUnavailable:
        raise store_unavailable() from None
    return _sent(preview, "image/jpeg", {"Cache-Control": "private, max-age=86400"})


class OutbreakFilter(BaseModel):
    by: Literal["district", "commune"] = "district"
    group: str | None = Field(default=None, max_length=64, description="a species group id, e.g. planthoppers")
    district: str | None = Field(default=None, max_length=128)
    weeks: int | None = Field(default=None, ge=1, le=104, description="the last so many weeks")


def _outbreaks(user: User, sessions: sessionmaker, where: OutbreakFilter) -> list[dict[str, object]]:
    if where.group and not load_catalogue().resolve(where.group):  # a typo is not "no outbreaks"
        raise Problem(422, "unknown_group", f"Không có loài hay nhóm loài nào tên '{where.group}'.",
                      f"No organism or group is called '{where.group}'.")  # fmt: skip
    with sessions() as session:
        return outbreak_counts(session, by=where.by, scope=district_scope(user), group=where.group,
                               district=where.district and (canonical_district(where.district) or where.district), weeks=where.weeks)  # fmt: skip


@router.get("/outbreaks")
def outbreaks(user: Officer, sessions: Sessions, where: Annotated[OutbreakFilter, Query()]) -> list[dict[str, object]]:
    """Confirmed reports per week, place and species, with names and a ``rising`` flag (see serving/outbreaks.py)."""
    return _outbreaks(user, sessions, where)


@router.get("/outbreaks.csv")
def outbreaks_csv(user: Officer, sessions: Sessions, where: Annotated[OutbreakFilter, Query()]) -> Response:
    text = to_csv(_outbreaks(user, sessions, where))
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="outbreaks-by-{where.by}.csv"'})  # fmt: skip


@router.post("/admin/reload")
async def reload_model(request: Request, user: Annotated[User, Depends(require(Role.admin))]) -> dict[str, str]:
    """Re-resolve the model reference now (e.g. after promoting a new champion)."""
    from pestid.serving.model_refresh import refresh_model

    version = await refresh_model(request.app)
    return {"model_version": version}
