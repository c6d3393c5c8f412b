"""POST /v1/identify: 1–5 photos of one observation in, a fused, calibrated answer out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import date, timedelta
from functools import partial
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from PIL import Image
from sqlalchemy.orm import sessionmaker

from pestid.catalogue import load_catalogue
from pestid.decision import Outcome, decide_by, fuse, fuse_novelty
from pestid.errors import ImageDecodeError
from pestid.hashing import sha256_bytes
from pestid.imaging import decode_image
from pestid.preprocess import draft_side
from pestid.serving import observability as obs
from pestid.serving.audits import audit_marks
from pestid.serving.batching import MicroBatcher
from pestid.serving.db import Submission
from pestid.serving.deps import get_model, get_photo_store, get_sessions, settings_dep
from pestid.serving.districts import canonical_district, districts, nearest_district
from pestid.serving.inputs import control_characters
from pestid.serving.language import request_language
from pestid.serving.model import LoadedModel
from pestid.serving.photos import PhotoStorage
from pestid.serving.problems import Problem
from pestid.serving.ratelimit import device_key
from pestid.serving.receipts import receipt_for
from pestid.serving.schemas import Answer, IdentifyResponse, ModelRef, guess, problems
from pestid.serving.settings import Settings
from pestid.serving.submissions import AcceptedPhoto, Observation, find_by_key, request_hash, store_submission
from pestid.serving.uploads import UploadedFile, read_multipart

router = APIRouter(prefix="/v1", tags=["identify"])
CROP_STAGES = {"seedling", "tillering", "booting", "heading", "flowering", "ripening"}
ACCEPTED_TYPES = ("image/", "application/octet-stream")
# A stored photo's bytes are bounded by its pixels: an uncompressed RGBA image needs 4 a pixel, and 1 MB more
# leaves room for the largest EXIF and colour profiles. Padding after the image is cut first (``image_end``).
MAX_BYTES_PER_PIXEL = 4
OLDEST_OBSERVATION = timedelta(days=365)  # a photo kept on a phone for months still counts; year 1 does not
BYTES_SLACK = 1_000_000


def _bad_field(name: str, vi: str, en: str) -> Problem:
    return Problem(422, "invalid_metadata", f"Trường '{name}' không hợp lệ: {vi}.", f"Field '{name}' is invalid: {en}.",
                   field=name)  # fmt: skip


def _number(fields: dict[str, str], name: str, low: float, high: float) -> float | None:
    raw = fields.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise _bad_field(name, "phải là số", "it must be a number") from None
    if not low <= value <= high:
        raise _bad_field(name, f"phải trong khoảng {low}…{high}", f"it must lie in {low}…{high}")
    return value


def column_length(name: str) -> int | None:
    """The longest text the database column of that name holds: the schema is the one source of the limits."""
    length = getattr(Submission.__table__.c[name].type, "length", None)
    return int(length) if length is not None else None


def parse_observation(fields: dict[str, str], header_key: str | None) -> Observation:
    unknown = set(fields) - {
        "latitude",
        "longitude",
        "commune",
        "district",
        "date",
        "crop_stage",
        "note",
        "idempotency_key",
    }
    if unknown:
        raise _bad_field(sorted(unknown)[0], "trường không được hỗ trợ", "it is not a known field")
    latitude, longitude = _number(fields, "latitude", -90, 90), _number(fields, "longitude", -180, 180)
    if (latitude is None) != (longitude is None):
        raise _bad_field("latitude", "cần cả vĩ độ và kinh độ", "send both latitude and longitude")
    observed_on = None
    if fields.get("date", "").strip():
        try:
            observed_on = date.fromisoformat(fields["date"].strip())
        except ValueError:
            raise _bad_field("date", "dạng YYYY-MM-DD", "use YYYY-MM-DD") from None
        today = date.today()
        if not today - OLDEST_OBSERVATION <= observed_on <= today + timedelta(days=1):  # a day's slack for time zones
            raise _bad_field("date", "không thể là ngày trong tương lai hoặc quá một năm trước",
                             "it cannot be in the future or more than a year ago")  # fmt: skip
    stage = fields.get("crop_stage", "").strip() or None
    if stage is not None and stage not in CROP_STAGES:
        raise _bad_field(
            "crop_stage", f"một trong {', '.join(sorted(CROP_STAGES))}", f"one of {', '.join(sorted(CROP_STAGES))}"
        )
    for name in ("commune", "district", "note", "crop_stage", "date"):
        if control_characters(fields.get(name, "")):
            raise _bad_field(name, "có ký tự điều khiển (như NUL)", "it holds a control character (such as NUL)")
    key = (header_key or fields.get("idempotency_key", "")).strip() or None
    if key is not None and not (key.isascii() and key.isprintable()):
        raise _bad_field("idempotency_key", "chỉ dùng chữ, số và dấu ASCII", "use printable ASCII only")
    for name, value in (("commune", fields.get("commune", "")), ("district", fields.get("district", "")),
                        ("idempotency_key", key or "")):  # fmt: skip
        longest = column_length(name)
        if longest is not None and len(value.strip()) > longest:
            raise _bad_field(name, f"tối đa {longest} ký tự", f"at most {longest} characters")
    district = None
    if fields.get("district", "").strip():
        district = canonical_district(fields["district"])
        if district is None:
            names = ", ".join(str(d["name"]) for d in districts())
            raise _bad_field(
                "district", f"không có trong danh sách huyện ({names})", f"it is not a listed district ({names})"
            )
    elif latitude is not None and longitude is not None:
        district = nearest_district(latitude, longitude)  # as the page does: the officer of that district sees it
    return Observation(latitude=latitude, longitude=longitude, commune=fields.get("commune", "").strip() or None,
                       district=district, observed_on=observed_on,
                       crop_stage=stage, note=fields.get("note", "").strip() or None, idempotency_key=key)  # fmt: skip


def check_storage(store: PhotoStorage, settings: Settings, incoming: int) -> None:
    """507 before photos would eat into the disk's reserve, which the database, previews and logs need (a local
    photo folder only: a bucket fills no disk of ours)."""
    free = store.free_bytes()
    if free is None:
        return
    obs.STORAGE_FREE.set(free)
    if free - incoming < settings.storage_reserve_bytes:
        obs.storage_low(free, settings.storage_reserve_bytes)
        raise Problem(507, "storage_full", "Máy chủ sắp hết chỗ lưu ảnh; ảnh chưa được lưu. Hãy gửi lại sau.",
                      "The server is almost out of room for photos; nothing was stored. Send again later.")  # fmt: skip


def digests(files: list[UploadedFile]) -> list[str]:
    return [sha256_bytes(upload.data) for upload in files]  # hashed where it lies: no copy of up to 75 MB


def accept_photos(
    files: list[UploadedFile], hashes: list[str], max_pixels: int, prepare: Callable[[Image.Image], np.ndarray],
    slots: Callable[[], AbstractContextManager[None]], min_side: int | None = None, max_pixels_full: int | None = None,
) -> tuple[list[AcceptedPhoto], np.ndarray]:  # fmt: skip
    """Decode every photo (off the event loop) into the model's input; the first bad one refuses the submission.

    One decode per slot at a time, and each full-size image is dropped as soon as it is prepared, so a worker
    holds at most one decoded photo per slot however many photos and requests arrive together.
    """
    accepted, inputs = [], []
    for index, (upload, digest) in enumerate(zip(files, hashes, strict=True)):
        if not upload.content_type.startswith(ACCEPTED_TYPES):
            raise Problem(415, "wrong_content_type", f"Ảnh {index + 1} có kiểu {upload.content_type}, không phải ảnh.",
                          f"Photo {index + 1} has type {upload.content_type}, not an image.", photo=index)  # fmt: skip
        data = bytes(upload.data)
        with slots():  # this client's share of the decode slots (ratelimit.FairSlots)
            try:
                image = decode_image(data, max_pixels=max_pixels, min_side=min_side, max_pixels_full=max_pixels_full)
            except ImageDecodeError as exc:
                status = 413 if exc.code == "too_many_pixels" else 422
                raise Problem(status, exc.code, f"Ảnh {index + 1}: {exc.message_vi}",
                              f"Photo {index + 1}: {exc.message_en}", photo=index) from None  # fmt: skip
            inputs.append(prepare(image))
        photo = AcceptedPhoto.of(data, digest, image)
        del image
        if len(photo.data) > MAX_BYTES_PER_PIXEL * photo.width * photo.height + BYTES_SLACK:
            raise Problem(413, "photo_larger_than_its_pixels",
                          f"Ảnh {index + 1} chứa nhiều dữ liệu hơn số điểm ảnh của nó; hãy gửi ảnh gốc từ máy ảnh.",
                          f"Photo {index + 1} holds more data than its pixels need; send the camera's own photo.",
                          photo=index)  # fmt: skip
        accepted.append(photo)
    return accepted, np.stack(inputs)


def build_response(outcome: Outcome, model: LoadedModel, lang: str, photos: int) -> dict[str, Any]:
    catalogue = load_catalogue()
    answer, group = outcome.answer, outcome.nearest_group
    # A species answer lists the other candidates; any other answer lists every in-scope candidate (names and
    # probabilities: nothing to act on; the officers' queue shows them, the farmer page words them as candidates
    # and offers none as a "maybe" when the photo is not recognised).
    shown = outcome.ranked[1:] if outcome.level == "species" else [r for r in outcome.ranked
                                                                   if catalogue.get(r.id).in_scope]  # fmt: skip
    body = IdentifyResponse(
        submission_id="", status="pending_review" if outcome.needs_review else "answered",
        decision=outcome.decision, message=outcome.messages[lang], lang="en" if lang == "en" else "vi",
        species=Answer.of(catalogue.get(answer.id), lang, answer.probability) if answer else None, level=outcome.level,
        nearest_group=Answer.of(catalogue.get(group.id), lang, group.probability) if group else None,
        alternatives=[guess(catalogue.get(r.id), lang, r.probability) for r in shown],
        do_not_spray=outcome.do_not_spray, needs_review=outcome.needs_review, photos=photos, unfamiliar=outcome.unfamiliar,
        model=ModelRef(name=model.name, version=model.version),
    )  # fmt: skip
    return body.model_dump(mode="json", exclude={"receipt"})  # the receipt is sent, never stored


def with_receipt(request: Request, stored: dict[str, Any]) -> dict[str, Any]:
    """The stored answer with its receipt: the same token on every replay of the same submission."""
    return {**stored, "receipt": receipt_for(request.app.state.receipt_key, stored["submission_id"])}


IDENTIFY_BODY = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["photos"], "additionalProperties": False,
        "properties": {
            "photos": {"type": "array", "items": {"type": "string", "format": "binary"}, "minItems": 1, "maxItems": 5,
                       "description": "1–5 photos of one observation: JPEG, PNG, WebP, HEIC or AVIF"},
            "latitude": {"type": "number", "minimum": -90, "maximum": 90},
            "longitude": {"type": "number", "minimum": -180, "maximum": 180},
            "commune": {"type": "string", "maxLength": 128},
            "district": {"type": "string", "maxLength": 128},
            "date": {"type": "string", "format": "date"},
            "crop_stage": {"type": "string", "enum": sorted(CROP_STAGES)},
            "note": {"type": "string", "maxLength": 4096},
            "idempotency_key": {"type": "string", "maxLength": 128, "description": "or the Idempotency-Key header"},
        },
    }}},
}  # fmt: skip
REPLAY = {"description": "A retry with the same key and request: the first answer again, nothing stored twice",
          "model": IdentifyResponse, "headers": {"Idempotent-Replayed": {"schema": {"type": "string"}}}}  # fmt: skip


async def upload_turn(request: Request) -> AsyncIterator[str]:
    """This client's turn to upload, before a byte of the body is read: within its rates (``UploadLimits``) and
    its share of uploads in flight (``InFlight``). Yields the client's address."""
    address = request.client.host if request.client else "unknown"
    wait = request.app.state.upload_limits.wait(address, device_key(request.headers.get("device-key")))
    if wait:
        raise Problem(429, "too_many_uploads", f"Gửi quá nhiều ảnh trong thời gian ngắn; hãy gửi lại sau {wait} giây.",
                      f"Too many uploads in a short time; send again in {wait} s.", retry_after_s=wait,
                      headers={"Retry-After": str(wait)})  # fmt: skip
    with request.app.state.in_flight.enter(address) as allowed:
        if not allowed:
            raise Problem(429, "too_many_at_once", "Đang gửi quá nhiều ảnh cùng lúc; hãy chờ ảnh trước gửi xong.",
                          "Too many uploads at once; wait for the earlier ones to finish.", retry_after_s=2,
                          headers={"Retry-After": "2"})  # fmt: skip
        yield address


@router.post("/identify", status_code=201, response_model=IdentifyResponse, openapi_extra={"requestBody": IDENTIFY_BODY},
             responses={200: REPLAY, **problems(400, 408, 413, 415, 422, 429, 503, 507)})  # fmt: skip
async def identify(
    request: Request,
    model: Annotated[LoadedModel, Depends(get_model)],
    settings: Annotated[Settings, Depends(settings_dep)],
    sessions: Annotated[sessionmaker, Depends(get_sessions)],
    store: Annotated[PhotoStorage, Depends(get_photo_store)],
    address: Annotated[str, Depends(upload_turn)],
) -> JSONResponse:
    lang = request_language(request)
    files, fields = await read_multipart(request, max_files=settings.max_photos, max_file_bytes=settings.max_upload_bytes,
                                         max_field_bytes=settings.max_field_bytes)  # fmt: skip
    if not files:
        raise Problem(400, "no_photos", "Hãy gửi ít nhất một ảnh trong trường 'photos'.",
                      "Send at least one photo in the 'photos' field.")  # fmt: skip
    observation = parse_observation(fields, request.headers.get("idempotency-key"))
    check_storage(store, settings, incoming=sum(len(f.data) for f in files))
    hashes = await run_in_threadpool(digests, files)
    fingerprint = request_hash(hashes, observation)
    with sessions() as session:
        existing = find_by_key(session, observation.idempotency_key, fingerprint)
    if existing is not None:
        return JSONResponse(with_receipt(request, existing.response), headers={"Idempotent-Replayed": "true"})
    batcher: MicroBatcher | None = request.app.state.batcher
    with batcher.expecting() if batcher else nullcontext():
        photos, inputs = await run_in_threadpool(accept_photos, files, hashes, settings.max_pixels,
                                                 model.predictor.prepare, partial(request.app.state.decode_slots, address),
                                                 draft_side(model.predictor.contract.preprocess)
                                                 if settings.reduced_decode else None,
                                                 settings.max_pixels_full_decode)  # fmt: skip
    assessment = (await batcher.assess(model.predictor, inputs) if batcher
                  else await run_in_threadpool(model.predictor.assess_of, inputs))  # fmt: skip
    probs = fuse(assessment.probabilities)
    contract = model.predictor.contract
    outcome = decide_by(contract, probs, catalogue=load_catalogue(), uncertain_floor=settings.uncertain_floor,
                        novelty=fuse_novelty(assessment.novelty))  # fmt: skip
    body = build_response(outcome, model, lang, len(photos))
    marks = audit_marks(getattr(request.app.state, "audit_plan", None), answer=outcome.answer.id if outcome.answer else None,
                        district=observation.district)  # fmt: skip
    stored, created = await run_in_threadpool(
        lambda: store_submission(sessions, store, photos=photos, observation=observation, response=body,
                                 decision=outcome.decision, label=outcome.ranked[0].id,
                                 confidence=outcome.ranked[0].probability, model_version=model.version, lang=lang,
                                 fingerprint=fingerprint, marks=marks)
    )  # fmt: skip
    obs.DECISIONS.labels(outcome.decision).inc()
    obs.PREDICTED.labels(outcome.ranked[0].id).inc()
    obs.CONFIDENCE.observe(outcome.ranked[0].probability)
    return JSONResponse(with_receipt(request, stored), status_code=201 if created else 200,
                        headers={} if created else {"Idempotent-Replayed": "true"})  # fmt: skip
