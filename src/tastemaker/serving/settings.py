"""Service settings: one class, read from ``TASTEMAKER_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# An admin token shorter than this is refused: the admin route swaps the model being served.
MIN_ADMIN_TOKEN = 32


class ServeSettings(BaseSettings):
    """Everything the service can be told; ``TASTEMAKER_MODEL_DIR`` etc. override defaults."""

    model_config = SettingsConfigDict(env_prefix="TASTEMAKER_", extra="ignore")

    model_dir: Path | None = Field(None, description="Model directory loaded at start-up.")
    admin_token: SecretStr | None = Field(
        None,
        description=f"Bearer token for /v1/admin/*, at least {MIN_ADMIN_TOKEN} characters; "
        "admin routes are off when unset.",
    )
    # Retrieval: exact scoring below this many items, an ANN index over item factors above.
    ann_threshold: int = Field(50_000, ge=1)
    ann_head_items: int = Field(
        8192, ge=1, description="Items with the longest vectors, searched exactly (see retrieval)."
    )
    ann_hnsw_m: int = Field(16, ge=4, le=128)
    ann_ef_construction: int = Field(64, ge=8)
    ann_ef_search: int = Field(64, ge=8)  # recall@10 1.000 on 1,000 users (docs/serving.md)
    ann_recall_users: int = Field(500, ge=1, description="Users sampled to measure recall@10.")
    ann_min_recall: float = Field(
        0.0, ge=0.0, le=1.0, description="Refuse a model whose ANN recall@10 is below this."
    )
    # Per-request work done by faiss: one thread, since requests already run in parallel.
    faiss_threads: int = Field(1, ge=1)
    # Limits on what a request may ask for.
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_header_bytes: int = Field(
        64 * 1024, ge=1024, description="Larger request heads answer 431 (serving.http)."
    )
    max_history: int = Field(10_000, ge=1)
    search_limit: int = Field(20, ge=1, le=100)
    log_level: str = "info"
    # bench/serve.py only: GET /v1/floor/{user}/recommendations answers a precomputed list of
    # the same size as a real one (serving.floor), the stack's own cost to compare against.
    bench_floor: bool = Field(False, description="Internal: the benchmark's floor route.")
    # Set by ``tastemaker serve --workers N`` (N > 1): the file through which a reload in one
    # worker reaches the others (serving.workers).
    workers_file: Path | None = Field(None, description="Internal: shared by the workers.")

    @field_validator("admin_token")
    @classmethod
    def _long_enough(cls, token: SecretStr | None) -> SecretStr | None:
        # An empty token would let anyone in (compare_digest("", "") is true); a short one is
        # guessable. Refusing to start is safer than serving with either.
        if token is not None and len(token.get_secret_value().strip()) < MIN_ADMIN_TOKEN:
            raise ValueError(
                f"TASTEMAKER_ADMIN_TOKEN has {len(token.get_secret_value())} characters; use at "
                f"least {MIN_ADMIN_TOKEN} (e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))') or unset it to turn the admin routes off"
            )
        return token
