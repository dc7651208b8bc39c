"""What a running process holds: settings, database, storage and (lazily) the provider."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.db import make_engine, make_session_factory
from shared.limiter import RateLimiter
from shared.provider import VisionProvider
from shared.settings import Settings
from shared.storage import Storage, make_storage

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"


@dataclass
class Resources:
    settings: Settings
    engine: Engine = field(init=False)
    sessions: sessionmaker[Session] = field(init=False)
    storage: Storage = field(init=False)

    def __post_init__(self) -> None:
        self.engine = make_engine(self.settings.database_url, self.settings.db_pool_size, self.settings.db_max_overflow)
        self.sessions = make_session_factory(self.engine)
        self.storage = make_storage(self.settings)

    @cached_property
    def limiter(self) -> RateLimiter:
        client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        return RateLimiter(client, self.settings.rate_limit_rpm, self.settings.rate_limit_tpm)

    @cached_property
    def provider(self) -> VisionProvider:
        return VisionProvider(
            api_key=self.settings.openai_api_key,
            # Explicit, so a blank OPENAI_BASE_URL in the environment never reaches the SDK.
            base_url=self.settings.openai_base_url or OPENAI_DEFAULT_BASE_URL,
            timeout=self.settings.provider_timeout_seconds,
            sdk_retries=self.settings.provider_sdk_retries,
            flex_timeout=self.settings.flex_timeout_seconds,
        )
