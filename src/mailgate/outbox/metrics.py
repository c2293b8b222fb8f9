"""In-process counters of the outbox, written out in the Prometheus text format (no client library)."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..budget import ByteBudget

__all__ = ["OutboxMetrics"]

#: Delivery latency buckets (seconds from enqueue to the server's acceptance).
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


@dataclass
class OutboxMetrics:
    """Counters since this process started: attempts by outcome and the delivery latency histogram."""

    sent: int = 0
    failed: int = 0
    retries: int = 0
    held: int = 0
    enqueued: int = 0
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    latency_sum: float = 0.0

    def observe_latency(self, seconds: float) -> None:
        self.latency_counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def render(self, by_status: Mapping[str, int], token_refreshes: int, intake: ByteBudget) -> str:
        """The ``/metrics`` text: gauges from the database, counters of this process, and the large API requests
        ``intake`` holds and those waiting for room in it."""
        out = [
            "# HELP mailgate_outbox_messages Messages in the outbox by status (all processes).",
            "# TYPE mailgate_outbox_messages gauge",
        ]
        out += [f'mailgate_outbox_messages{{status="{s}"}} {n}' for s, n in sorted(by_status.items())]
        counters = (
            ("enqueued", self.enqueued, "Messages accepted into the outbox by this process."),
            ("sent", self.sent, "Messages delivered to the SMTP server by this process."),
            ("failed", self.failed, "Messages that failed for good in this process."),
            ("retries", self.retries, "Attempts that failed transiently and were scheduled again."),
            ("held", self.held, "Messages held for the administrator (consent or configuration)."),
        )
        for name, value, text in counters:
            out += [
                f"# HELP mailgate_outbox_{name}_total {text}",
                f"# TYPE mailgate_outbox_{name}_total counter",
                f"mailgate_outbox_{name}_total {value}",
            ]
        out += [
            "# HELP mailgate_outbox_upload_bytes Bytes of large API requests held now (of the upload budget).",
            "# TYPE mailgate_outbox_upload_bytes gauge",
            f"mailgate_outbox_upload_bytes {intake.reserved}",
            "# HELP mailgate_outbox_uploads_waiting Large API requests waiting for room in the upload budget.",
            "# TYPE mailgate_outbox_uploads_waiting gauge",
            f"mailgate_outbox_uploads_waiting {intake.waiting}",
        ]
        out += [
            "# HELP mailgate_token_refreshes_total Refresh-token grants sent to the token endpoint by this process.",
            "# TYPE mailgate_token_refreshes_total counter",
            f"mailgate_token_refreshes_total {token_refreshes}",
            "# HELP mailgate_outbox_delivery_seconds Time from enqueue to acceptance by the SMTP server.",
            "# TYPE mailgate_outbox_delivery_seconds histogram",
        ]
        cumulative = 0
        for bound, count in zip((*BUCKETS, float("inf")), self.latency_counts, strict=True):
            cumulative += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'mailgate_outbox_delivery_seconds_bucket{{le="{le}"}} {cumulative}')
        out += [
            f"mailgate_outbox_delivery_seconds_sum {self.latency_sum:.6f}",
            f"mailgate_outbox_delivery_seconds_count {cumulative}",
        ]
        return "\n".join(out) + "\n"
