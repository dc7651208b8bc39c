"""The one settings object: environment variables prefixed MARKQ_, plus the openai SDK's own."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.models import Reader

ImageDetail = Literal["low", "high", "auto"]


class Settings(BaseSettings):
    """Defaults work on a bare machine: SQLite and a storage folder under .markq/, local Redis."""

    model_config = SettingsConfigDict(env_prefix="MARKQ_", env_file=".env", extra="ignore")

    home: Path = Path(".markq")
    database_url: str = "sqlite:///.markq/markq.db"
    redis_url: str = "redis://127.0.0.1:6379/0"

    storage_backend: Literal["local", "s3"] = "local"
    storage_dir: Path = Path(".markq/storage")
    s3_bucket: str = "markq"
    s3_endpoint_url: str | None = None
    # Where the provider can reach the storage. When set, pages go out as presigned GET URLs
    # signed for this endpoint; when unset, pages go inline as data: image parts.
    s3_public_endpoint_url: str | None = None
    # Where clients (the CLI, browsers) PUT pages by URL, as they reach the storage; unset: the
    # public endpoint; neither set: uploads stream through the API's own upload endpoint.
    s3_upload_endpoint_url: str | None = None
    # Where teachers and parents open markq's pages: share links are built on it, never on the
    # request's Host header (which a client chooses).
    public_base_url: str = "http://127.0.0.1:8000"
    # text: for a person at a terminal; json: one object a line, with paper and exam ids, for a log store.
    log_format: Literal["text", "json"] = "text"
    # Turns /metrics (Prometheus) on; a scrape brings it as a bearer token.
    metrics_token: str | None = None
    s3_region: str = "us-east-1"
    presign_seconds: int = Field(300, ge=30, le=3600)  # live calls: the page is fetched at once

    openai_api_key: str | None = Field(None, validation_alias=AliasChoices("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(None, validation_alias=AliasChoices("OPENAI_BASE_URL"))
    provider_timeout_seconds: float = 120.0
    # A call at the Flex tier (exam priority "flex") waits this long: the Flex tier queues work.
    flex_timeout_seconds: float = 900.0
    # Refusals ("resource unavailable") of one paper at the Flex tier before an exam whose teacher
    # allowed it (flex_fallback "standard") pays for one call at the standard tier.
    flex_tries_before_standard: int = Field(3, ge=1)
    # The first wait after a Flex refusal (OpenAI's advice: back off); doubled for each refusal after.
    flex_retry_seconds: float = Field(60.0, gt=0)
    default_model: str = "gpt-4o"
    # A JSON file in the shape of shared/data/models.json whose models replace or extend the
    # packaged prices and token rules (e.g. when OpenAI changes prices).
    models_file: Path | None = None
    default_image_detail: ImageDetail = "high"
    max_completion_tokens: int = 4000
    # Who reads an exam's answers when the exam does not say: unset means "vision" when an
    # OPENAI_API_KEY is set and "local" (offline OCR, free) when none is.
    default_provider: Reader | None = None
    # The offline reader's verdicts below this confidence go to a teacher (local) or to the vision
    # model (cascade). Chosen with `python -m bench.offline`.
    local_confidence_threshold: float = Field(0.9, ge=0, le=1)
    # Threads the OCR engine uses for one page; unset: every core. With N OCR worker processes
    # on a host of C cores, C // N avoids oversubscribing.
    ocr_threads: int | None = Field(None, ge=1, le=256)

    max_page_bytes: int = 25 * 1024 * 1024
    # Upload URLs are valid this long; a paper whose upload is not completed by then is removed.
    upload_expiry_seconds: int = 24 * 3600
    max_pages_per_paper: int = 20
    max_image_pixels: int = 40_000_000
    pdf_dpi: int = Field(150, ge=72, le=400)
    # One class's ZIP: entries, bytes unpacked in all, and how much more than compressed an entry
    # may be before it counts as a zip bomb (scans compress 1-3x; a bomb, a thousand times).
    bulk_max_entries: int = 2000
    bulk_max_total_bytes: int = 2 * 1024**3
    bulk_max_ratio: int = 100  # scanned PDFs are rendered page by page at this resolution

    queue_name: str = "markq"  # provider calls: run its worker with a thread pool (-P threads)
    image_queue_name: str = "markq-images"  # page normalisation, CPU work: a prefork worker
    ocr_queue_name: str = "markq-ocr"  # offline reading, CPU work: a prefork worker of its own

    @property
    def queue_names(self) -> tuple[str, str, str]:
        """Every queue markq sends work to: calls, images, OCR."""
        return self.queue_name, self.image_queue_name, self.ocr_queue_name

    # Where the shared limiter starts before the provider's x-ratelimit-* headers correct it.
    rate_limit_rpm: int = 500
    rate_limit_tpm: int = 30_000
    # A wait for capacity up to this long sleeps in the worker; a longer one frees the worker slot
    # and retries the task with a countdown.
    short_wait_seconds: float = 10.0
    # Off only to measure a naive baseline (bench.throughput): no shared limiter, and the SDK
    # retrying on its own. In service, retries are the task's (see docs/architecture.md).
    # The economy lane: how often beat sends waiting papers and polls open batches, and how long
    # a batch's presigned page URLs live (a batch may wait up to 24 hours to run).
    batch_interval_seconds: float = 60.0
    batch_presign_seconds: int = Field(24 * 3600 + 3600, ge=60, le=7 * 24 * 3600)
    # Webhooks: callback hosts an admin allows (comma-separated, wildcards like *.school.example),
    # and whether internal addresses or plain http may be called (tests and closed networks only).
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_allow_private: bool = False
    webhook_allow_http: bool = False
    webhook_max_attempts: int = 8
    limiter_enabled: bool = True
    provider_sdk_retries: int = 0
    db_pool_size: int = 10
    db_max_overflow: int = 20
    max_attempts: int = 5
    stuck_queued_seconds: int = 300
    # A claimed paper's lease: the sweep takes back a paper whose worker has been silent this long.
    # Unset: the provider timeout plus one sweep interval, so a paper whose worker died is marked
    # again within the provider timeout plus two sweep intervals, and a live call is never cut short.
    stuck_processing_seconds: float | None = None
    sweep_interval_seconds: float = 60.0

    @property
    def lease_seconds(self) -> float:
        if self.stuck_processing_seconds is not None:
            return self.stuck_processing_seconds
        return self.provider_timeout_seconds + self.sweep_interval_seconds

    @property
    def provider(self) -> Reader:
        """Who reads an exam's answers when the exam names no provider."""
        if self.default_provider is not None:
            return self.default_provider
        return Reader.vision if self.openai_api_key else Reader.local

    @field_validator("webhook_allowed_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return [h.strip() for h in value.split(",") if h.strip()] if isinstance(value, str) else value

    @field_validator(
        "openai_api_key",
        "openai_base_url",
        "s3_endpoint_url",
        "s3_public_endpoint_url",
        "s3_upload_endpoint_url",
        "metrics_token",
        "default_provider",
        "ocr_threads",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """docker-compose passes unset variables through as empty strings."""
        return None if isinstance(value, str) and not value.strip() else value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
