"""The outbox's counters written out in the Prometheus text format for ``/metrics`` (no client library)."""

from __future__ import annotations

from collections.abc import Mapping

from ..budget import ByteBudget
from ..outbox import OutboxMetrics
from ..outbox.service import BUCKETS

__all__ = ["render_outbox"]


def render_outbox(outbox: OutboxMetrics, by_status: Mapping[str, int], token_refreshes: int, intake: ByteBudget) -> str:
    """The outbox's part of ``/metrics``: gauges from the database, the counters of this process
    (``outbox``), and the large API requests ``intake`` holds and those waiting for room in it."""
    out = [
        "# HELP mailgate_outbox_messages Messages in the outbox by status (all processes).",
        "# TYPE mailgate_outbox_messages gauge",
    ]
    out += [f'mailgate_outbox_messages{{status="{s}"}} {n}' for s, n in sorted(by_status.items())]
    counters = (
        ("enqueued", outbox.enqueued, "Messages accepted into the outbox by this process."),
        ("sent", outbox.sent, "Messages delivered to the SMTP server by this process."),
        ("failed", outbox.failed, "Messages that failed for good in this process."),
        ("retries", outbox.retries, "Attempts that failed transiently and were scheduled again."),
        ("held", outbox.held, "Messages held for the administrator (consent or configuration)."),
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
    for bound, count in zip((*BUCKETS, float("inf")), outbox.latency_counts, strict=True):
        cumulative += count
        le = "+Inf" if bound == float("inf") else repr(bound)
        out.append(f'mailgate_outbox_delivery_seconds_bucket{{le="{le}"}} {cumulative}')
    out += [
        f"mailgate_outbox_delivery_seconds_sum {outbox.latency_sum:.6f}",
        f"mailgate_outbox_delivery_seconds_count {cumulative}",
    ]
    return "\n".join(out) + "\n"
