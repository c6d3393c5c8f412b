"""GET /v1/submissions/{id}: a farmer's phone asks, with its receipt, what became of a submission."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pestid.catalogue import load_catalogue
from pestid.serving.db import Review, Submission
from pestid.serving.deps import get_sessions
from pestid.serving.language import request_language
from pestid.serving.problems import Problem
from pestid.serving.receipts import receipt_matches
from pestid.serving.schemas import Decided, Named, SubmissionState, Verdict, named, problems
from pestid.vocabulary import Decision, RejectReason, ReviewStatus

router = APIRouter(prefix="/v1", tags=["identify"])

# Why an officer set a photo aside, as the farmer is told it: with what to do next.
REJECTED: dict[str, tuple[str, str]] = {
    RejectReason.blurry: ("Ảnh bị mờ, cán bộ không xác định được. Hãy chụp lại gần hơn và rõ nét.",
                          "The photo was too blurry for the officer to tell. Take a closer, sharper photo."),
    RejectReason.not_rice: ("Cán bộ xác định ảnh này không phải sâu bệnh hại lúa.",
                            "The officer found this is not a rice pest or disease."),
    RejectReason.duplicate: ("Ảnh này trùng với một ảnh đã gửi trước đó.",
                             "This photo repeats one sent before."),
    RejectReason.not_harmful: ("Cán bộ xác định đây không phải loài gây hại; không cần phun thuốc.",
                               "The officer found this is not harmful; no spraying is needed."),
}  # fmt: skip
NOT_USED = ("Cán bộ không dùng được ảnh này.", "The officer could not use this photo.")


def _named(label: str | None, lang: str) -> Named | None:
    return named(load_catalogue().get(label), lang) if label else None


def _told(sub: Submission) -> str | None:
    """What the farmer was told it is: the identified answer's species or group, else nothing."""
    species = sub.response.get("species") if sub.decision == Decision.identified else None
    return species.get("id") if isinstance(species, dict) else None


def _verdict(session: Session, sub: Submission, lang: str) -> Verdict | None:
    if sub.status not in (ReviewStatus.approved, ReviewStatus.rejected) or sub.reviewed_at is None:
        return None
    decided_at = sub.reviewed_at.isoformat()
    if sub.status == ReviewStatus.approved:
        species = Decided.of(load_catalogue().get(sub.final_label), lang) if sub.final_label else None
        return Verdict(species=species, corrected=sub.final_label != _told(sub), decided_at=decided_at)
    reason: str | None = session.scalars(select(Review.reason).where(Review.submission_id == sub.id, Review.verdict == "reject",
                                                         Review.undone_at.is_(None))
                             .order_by(Review.created_at.desc(), Review.id.desc())).first()  # fmt: skip
    texts = REJECTED.get(reason or "", NOT_USED)
    return Verdict(rejected=texts[1] if lang == "en" else texts[0], decided_at=decided_at)


@router.get("/submissions/{submission_id}", response_model=SubmissionState, responses=problems(404))
def submission_state(
    submission_id: str, request: Request, sessions: Annotated[sessionmaker, Depends(get_sessions)],
    receipt: Annotated[str | None, Header(description="The receipt POST /v1/identify returned")] = None,
) -> SubmissionState:  # fmt: skip
    """The submission's review state and the officers' verdict, for whoever holds its receipt.

    A wrong or missing receipt answers exactly as an unknown id does (404), so ids cannot be probed.
    """
    lang = request_language(request)
    not_found = Problem(404, "submission_not_found", "Không tìm thấy lần gửi này (hoặc mã biên nhận sai).",
                        "No such submission (or the receipt is wrong).")  # fmt: skip
    if not receipt_matches(request.app.state.receipt_key, submission_id, receipt):
        raise not_found
    with sessions() as session:
        sub = session.get(Submission, submission_id)
        if sub is None:
            raise not_found
        return SubmissionState(submission_id=sub.id, created_at=sub.created_at.isoformat(), status=sub.status,
                               decision=sub.decision, species=_named(_told(sub), lang),
                               verdict=_verdict(session, sub, lang))  # fmt: skip
