"""SQLAlchemy 2.x models: the source of truth for schools, exams, papers, results and usage."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy import true as sa_true
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class PaperStatus(enum.StrEnum):
    uploading = "uploading"  # upload URLs issued; the client has not called complete yet
    queued = "queued"
    processing = "processing"
    graded = "graded"
    needs_review = "needs_review"
    failed = "failed"
    paused = "paused"


class BulkStatus(enum.StrEnum):
    """A class ZIP uploaded by URL."""

    uploading = "uploading"  # its upload URL issued; the client has not called complete yet
    queued = "queued"  # stored; waiting for an images worker to unpack it
    unpacking = "unpacking"
    done = "done"  # every student's paper created or refused (`result`)
    failed = "failed"  # the archive itself was refused (`status_reason`)


class Reader(enum.StrEnum):
    """Who reads an exam's answers."""

    vision = "vision"  # the vision model reads every page
    local = "local"  # the OCR engine on this machine, free; unsure answers go to a teacher
    cascade = "cascade"  # local first; only the questions it is unsure of go to the vision model


class Priority(enum.StrEnum):
    """How an exam's provider calls are made."""

    standard = "standard"  # one live call per paper, now
    economy = "economy"  # through the Batch API at half the price, within the provider's 24 hours
    flex = "flex"  # one live call at the Flex tier: Batch prices, slower, now and then unavailable


class FlexFallback(enum.StrEnum):
    """What a flex exam does when the Flex tier keeps answering "resource unavailable"."""

    wait = "wait"  # wait and ask again at the Flex tier, never paying more
    standard = "standard"  # after a few refusals, one call at the standard tier (the teacher allowed it)


class PauseCause(enum.StrEnum):
    """Why a paused paper waits; cleared when the cause is."""

    exam_budget = "exam_budget"
    school_budget = "school_budget"
    quota = "quota"
    provider_key = "provider_key"  # the server's provider key was refused: an admin must fix it
    trial = "trial"  # held by a trial run until the teacher releases the exam


class MarkedBy(enum.StrEnum):
    vision = "vision"
    local = "local"


class UsageOutcome(enum.StrEnum):
    """What became of one provider call (a usage row). The ledger owns every transition."""

    reserved = "reserved"  # in flight: cost_usd holds the worst case, so caps hold under concurrency
    replied = "replied"  # paid and stored (reply first), not yet recorded as marks
    ok = "ok"  # recorded
    invalid_reply = "invalid_reply"
    rate_limited = "rate_limited"
    insufficient_quota = "insufficient_quota"
    rejected = "rejected"
    unavailable = "unavailable"
    flex_unavailable = "flex_unavailable"  # the Flex tier had no capacity: not billed, asked again later
    unknown = "unknown"  # the request was sent and no answer came: kept at its estimate
    abandoned = "abandoned"  # its worker died before it settled: kept at its worst case
    reused = "reused"
    batch_not_sent = "batch_not_sent"
    batch_line_failed = "batch_line_failed"  # the batch ended without answering this paper
    batch_rejected = "batch_rejected"  # the batch's answer for this paper was unusable


class School(Base):
    __tablename__ = "schools"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # Dollars the school may spend per UTC day; None means no cap.
    daily_budget_usd: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """A school's API key. Only a SHA-256 of the secret is kept; the prefix finds the row."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]

    school: Mapped[School] = relationship()


class Teacher(Base):
    """A person who signs in to the web app. Belongs to one school and sees only its exams; an
    admin also invites teachers. Only an argon2 hash of the password is kept."""

    __tablename__ = "teachers"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    language: Mapped[str] = mapped_column(String(10), default="zh")
    # Failed sign-ins in a row; each one past the allowance makes the next attempt wait longer.
    failed_sign_ins: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None]

    school: Mapped[School] = relationship()


class WebSession(Base):
    """A signed-in browser: the cookie holds a random token, the server keeps its hash, the CSRF
    token every form must echo, and when it ends. Signing out deletes the row."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    teacher_id: Mapped[int] = mapped_column(ForeignKey("teachers.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]

    teacher: Mapped[Teacher] = relationship()


class ShareLink(Base):
    """A link to an exam's pages for people without an API key: the whole exam (teacher's report
    and every sheet) or one student's sheet. Only a SHA-256 of its token is kept; revocable."""

    __tablename__ = "share_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"), index=True)
    exam_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("exams.id", ondelete="CASCADE"), index=True)
    student_ref: Mapped[str | None] = mapped_column(String(100))  # None: the whole exam
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class KnowledgePoint(Base):
    """One node of the versioned bilingual knowledge-point vocabulary (知识点)."""

    __tablename__ = "knowledge_points"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    subject: Mapped[str] = mapped_column(String(40))
    grade: Mapped[int] = mapped_column(Integer)
    strand: Mapped[str] = mapped_column(String(100))
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    aliases: Mapped[list[str]] = mapped_column(JSON, default=list)
    vocabulary_version: Mapped[str] = mapped_column(String(20))
    # Set for a point an exam added itself before school vocabularies (kept so old results count).
    exam_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("exams.id", ondelete="CASCADE"), index=True)
    # Set for a school's own point: every exam of the school shares it, so it adds up across exams.
    school_id: Mapped[int | None] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"), index=True)
    # The national point a school's point refines, if any.
    refines: Mapped[str | None] = mapped_column(String(100))

    __table_args__ = (Index("ix_knowledge_points_subject_grade", "subject", "grade"),)

    def name_in(self, language: str) -> str:
        """The point's name in `language`: Chinese for "zh", English otherwise."""
        return self.name_zh if language == "zh" else self.name_en


class Exam(Base):
    __tablename__ = "exams"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(40))
    grade: Mapped[int] = mapped_column(Integer)
    language: Mapped[str] = mapped_column(String(10))
    answer_key: Mapped[dict[str, Any]] = mapped_column(JSON)
    rubric: Mapped[str] = mapped_column(Text, default="")
    model: Mapped[str] = mapped_column(String(100))
    image_detail: Mapped[str] = mapped_column(String(10))
    # Dollars the whole exam may spend; None means no cap.
    budget_usd: Mapped[Decimal | None] = mapped_column(Numeric(12, 4))
    # Trial run: grade only the first N papers and hold the rest until the teacher releases them.
    trial_papers: Mapped[int | None] = mapped_column(Integer)
    trial_released: Mapped[bool] = mapped_column(Boolean, default=False)
    priority: Mapped[Priority] = mapped_column(Enum(Priority, native_enum=False, length=10), default=Priority.standard)
    flex_fallback: Mapped[FlexFallback] = mapped_column(
        Enum(FlexFallback, native_enum=False, length=10), default=FlexFallback.wait, server_default="wait"
    )
    # Who reads the answers (named "provider" in the API).
    provider: Mapped[Reader] = mapped_column(
        Enum(Reader, native_enum=False, length=10), default=Reader.vision, server_default="vision"
    )
    # The blank paper (shared.grading.exam_template): its pages' storage keys, the status of its
    # reading, and each question's answer region on it. None: the exam has no template.
    template: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Told when each paper is graded and when the exam is done; requests signed with the secret.
    callback_url: Mapped[str | None] = mapped_column(String(500))
    callback_secret: Mapped[str | None] = mapped_column(String(64))
    done_notified_at: Mapped[datetime | None]
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Paper(Base):
    __tablename__ = "papers"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"), index=True)
    exam_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("exams.id", ondelete="CASCADE"), index=True)
    student_ref: Mapped[str] = mapped_column(String(100))
    class_label: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[PaperStatus] = mapped_column(
        Enum(PaperStatus, native_enum=False, length=20), default=PaperStatus.queued
    )
    status_reason: Mapped[str | None] = mapped_column(Text)
    # Why a paused paper is paused; cleared on resume.
    paused_for: Mapped[PauseCause | None] = mapped_column(Enum(PauseCause, native_enum=False, length=20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Content hash of the ordered pages, and of the exact request prefix it was graded under:
    # the same pages under the same prompt are graded once.
    pages_hash: Mapped[str | None] = mapped_column(String(64))
    # An upload never completed by then is removed (row and objects) by the sweep.
    upload_expires_at: Mapped[datetime | None]
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("provider_batches.id"), index=True)
    prompt_version: Mapped[str | None] = mapped_column(String(64))
    reused_from: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # Points earned on answers with a final verdict; the points of answers still waiting for a
    # teacher are `pending_points`, apart (never counted as 0). Provisional while pending_points > 0.
    score: Mapped[float | None] = mapped_column(Float)
    max_score: Mapped[float | None] = mapped_column(Float)
    pending_points: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    reply_key: Mapped[str | None] = mapped_column(String(300))
    # The offline reader's readings per question (local and cascade exams), kept so a retried
    # cascade paper does not read its pages again.
    local_reading: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # A vision-lane paper of an exam with a blank paper: every question's region cut from its
    # aligned pages into one image ({"key", "width", "height", "questions"}), or why not ({"note"}).
    crops: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    claimed_at: Mapped[datetime | None]
    graded_at: Mapped[datetime | None]

    pages: Mapped[list[Page]] = relationship(
        order_by="Page.number", cascade="all, delete-orphan", back_populates="paper"
    )
    questions: Mapped[list[QuestionResult]] = relationship(
        order_by="QuestionResult.position", cascade="all, delete-orphan", back_populates="paper"
    )
    usage: Mapped[list[Usage]] = relationship(order_by="Usage.id", viewonly=True)

    __table_args__ = (
        Index("ix_papers_status_updated", "status", "updated_at"),
        Index("ix_papers_reuse", "school_id", "pages_hash", "prompt_version"),
    )


class ProviderBatch(Base):
    """One Batch API job: an exam's waiting papers sent together at the batch price."""

    __tablename__ = "provider_batches"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"), index=True)
    exam_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("exams.id", ondelete="CASCADE"), index=True)
    provider_batch_id: Mapped[str] = mapped_column(String(100), unique=True)
    input_file_id: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="validating")
    total: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class IdempotencyKey(Base):
    """A client's Idempotency-Key: the same key and request return the first response."""

    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)  # None while the first request runs
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("school_id", "key"),)


class WebhookDelivery(Base):
    """One event for an exam's callback URL, delivered (and retried) by a task."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    exam_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("exams.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending, delivered, failed
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]


class Page(Base):
    __tablename__ = "pages"

    id: Mapped[int] = mapped_column(primary_key=True)
    paper_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    original_key: Mapped[str] = mapped_column(String(300))
    original_format: Mapped[str] = mapped_column(String(20))
    original_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    normalised_key: Mapped[str | None] = mapped_column(String(300))
    sent_width: Mapped[int | None] = mapped_column(Integer)
    sent_height: Mapped[int | None] = mapped_column(Integer)
    # False for a file uploaded by URL until the images worker has checked and decoded it (the
    # API checked a multipart page in the request); the client's file name, for its errors only.
    verified: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa_true())
    upload_name: Mapped[str | None] = mapped_column(String(255))
    upload_token_hash: Mapped[str | None] = mapped_column(String(64))

    paper: Mapped[Paper] = relationship(back_populates="pages")

    __table_args__ = (UniqueConstraint("paper_id", "number"),)


class QuestionResult(Base):
    __tablename__ = "question_results"

    id: Mapped[int] = mapped_column(primary_key=True)
    paper_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    question_id: Mapped[str] = mapped_column(String(50))
    student_answer: Mapped[str] = mapped_column(Text)
    correct_answer: Mapped[str] = mapped_column(Text)
    # The effective verdict (the model's, or the teacher's after review): every count reads these.
    is_correct: Mapped[bool] = mapped_column(Boolean)
    score: Mapped[float | None] = mapped_column(Float)  # None until a teacher reads an illegible answer
    max_score: Mapped[float] = mapped_column(Float)
    error_type: Mapped[str] = mapped_column(String(30))
    explanation: Mapped[str] = mapped_column(Text)
    correction: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float] = mapped_column(Float)
    needs_review: Mapped[bool] = mapped_column(Boolean, default=False)
    review_reason: Mapped[str | None] = mapped_column(Text)
    # False when the key gave no answer and the model solved the question itself.
    from_key: Mapped[bool] = mapped_column(Boolean, default=True)
    # The deterministic check: True/False when it could compare the answer with the key, else None.
    check_equivalent: Mapped[bool | None] = mapped_column(Boolean)
    # What the model said, kept when a teacher overrides it, for the agreement figure.
    model_is_correct: Mapped[bool] = mapped_column(Boolean)
    model_score: Mapped[float | None] = mapped_column(Float)
    model_knowledge_points: Mapped[list[str]] = mapped_column(JSON, default=list)
    reviewed_at: Mapped[datetime | None]
    # Who produced the verdict: the vision model or the offline reader.
    marked_by: Mapped[MarkedBy] = mapped_column(
        Enum(MarkedBy, native_enum=False, length=10), default=MarkedBy.vision, server_default="vision"
    )

    paper: Mapped[Paper] = relationship(back_populates="questions")
    knowledge_points: Mapped[list[QuestionKnowledgePoint]] = relationship(
        cascade="all, delete-orphan", back_populates="question"
    )

    __table_args__ = (UniqueConstraint("paper_id", "question_id"),)


class QuestionKnowledgePoint(Base):
    """Which knowledge points a question result touches; reports count missed points from here."""

    __tablename__ = "question_knowledge_points"

    question_result_id: Mapped[int] = mapped_column(
        ForeignKey("question_results.id", ondelete="CASCADE"), primary_key=True
    )
    knowledge_point_id: Mapped[str] = mapped_column(ForeignKey("knowledge_points.id"), primary_key=True, index=True)

    question: Mapped[QuestionResult] = relationship(back_populates="knowledge_points")


class Usage(Base):
    """One row per provider call, successful or not."""

    __tablename__ = "usage"

    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"), index=True)
    exam_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("exams.id", ondelete="CASCADE"), index=True)
    paper_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(100))
    # A UsageOutcome, with ":batch", ":flex" or ":unpriced" after it where that applies (shared.spending.ledger).
    outcome: Mapped[str] = mapped_column(String(30))
    request_id: Mapped[str | None] = mapped_column(String(100))
    estimated_prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    estimated_completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    estimated_cost_usd: Mapped[Decimal] = mapped_column(Numeric(12, 6), default=Decimal(0))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(12, 6), default=Decimal(0))
    # Questions the call asked about (a cascade asks only its unsure ones); 0: not a marking call.
    questions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    seconds: Mapped[float | None] = mapped_column(Float)  # how long a live call took (metrics)
    # The paid reply, stored before anything else is done with it, so a failure after the call
    # (Redis, storage, the database, a killed worker) records from it instead of calling again.
    reply_content: Mapped[str | None] = mapped_column(Text)
    reply_model: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    __table_args__ = (Index("ix_usage_paper_outcome", "paper_id", "outcome"),)


class PracticeSet(Base):
    """Practice questions the model wrote for one knowledge point, grade and language: paid once,
    then served to every student who needs that point (the call is in the ledger)."""

    __tablename__ = "practice_sets"

    id: Mapped[int] = mapped_column(primary_key=True)
    knowledge_point_id: Mapped[str] = mapped_column(String(100))
    grade: Mapped[int] = mapped_column(Integer)
    language: Mapped[str] = mapped_column(String(10))
    questions: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    model: Mapped[str] = mapped_column(String(100))
    usage_id: Mapped[int | None] = mapped_column(ForeignKey("usage.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("knowledge_point_id", "grade", "language"),)


class StaleObject(Base):
    """A stored object no row names any more, that storage would not delete when it was let go
    (storage was away): the sweep deletes it once storage answers again."""

    __tablename__ = "stale_objects"

    key: Mapped[str] = mapped_column(String(500), primary_key=True)
    noted_at: Mapped[datetime] = mapped_column(default=utcnow)


class BulkUpload(Base):
    """A class ZIP uploaded by URL: stored, then unpacked and checked by an images worker with the
    rules of `POST /v1/exams/{id}/bulk`; the papers it made and the files it refused in `result`."""

    __tablename__ = "bulk_uploads"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    school_id: Mapped[int] = mapped_column(ForeignKey("schools.id", ondelete="CASCADE"), index=True)
    exam_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("exams.id", ondelete="CASCADE"), index=True)
    status: Mapped[BulkStatus] = mapped_column(
        Enum(BulkStatus, native_enum=False, length=20), default=BulkStatus.uploading
    )
    status_reason: Mapped[str | None] = mapped_column(Text)
    archive_name: Mapped[str] = mapped_column(String(255))  # the client's, for messages only
    archive_bytes: Mapped[int] = mapped_column(BigInteger)  # as declared
    archive_key: Mapped[str] = mapped_column(String(300))
    class_label: Mapped[str] = mapped_column(String(100), default="")
    # file path -> [student_ref, class_label], from the roster CSV sent with the upload
    roster: Mapped[dict[str, list[str]] | None] = mapped_column(JSON)
    upload_token_hash: Mapped[str | None] = mapped_column(String(64))  # the local backend's URL
    upload_expires_at: Mapped[datetime | None]
    # A large ZIP goes to S3 in parts of `part_bytes`, each to its own URL: the multipart upload's
    # id until complete joins them (a dropped link resumes from the last part stored).
    parts_id: Mapped[str | None] = mapped_column(String(1000))
    part_bytes: Mapped[int | None] = mapped_column(Integer)
    # {"created": [...], "existing": [...], "refused": [...]}, written as the worker goes
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_bulk_uploads_status_updated", "status", "updated_at"),)
