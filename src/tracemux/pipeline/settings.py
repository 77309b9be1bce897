"""The limits of the process-wide pipeline."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PipelineSettings:
    """Limits of the process-wide pipeline."""

    max_queue_spans: int = 100_000
    max_queue_bytes: int = 64 * 1024 * 1024
    batch_size: int = 512
    flush_interval: float = 1.0
    exit_timeout: float = 10.0
    max_destinations: int = 256
    idle_ttl: float = 300.0

    def __post_init__(self) -> None:
        checks = {
            "max_queue_spans": self.max_queue_spans >= 1,
            "max_queue_bytes": self.max_queue_bytes >= 1024,
            "batch_size": self.batch_size >= 1,
            "flush_interval": self.flush_interval > 0,
            "exit_timeout": self.exit_timeout >= 0,
            "max_destinations": self.max_destinations >= 1,
            "idle_ttl": self.idle_ttl > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(
                    f"PipelineSettings.{name} is out of range: {getattr(self, name)!r}"
                )
