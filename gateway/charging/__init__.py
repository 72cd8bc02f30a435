"""Charging: the published tariff, quotes, metering, invoices, budget caps and the finance dashboard."""
