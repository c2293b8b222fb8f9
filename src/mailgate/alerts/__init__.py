"""Alerts: where they go (:class:`AlertConfig`) and the :class:`Notifier` that says each condition once when it
starts and once when it is resolved, by webhook and email."""

from .channels import Delivery, HealthyAccounts
from .notifier import Notification, Notifier
from .settings import AlertConfig, AlertSettings, AlertSettingsUpdate, FallbackSmtp, FallbackSmtpUpdate

__all__ = [
    "AlertConfig",
    "AlertSettings",
    "AlertSettingsUpdate",
    "Delivery",
    "FallbackSmtp",
    "FallbackSmtpUpdate",
    "HealthyAccounts",
    "Notification",
    "Notifier",
]
