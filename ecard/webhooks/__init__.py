"""Signed webhook deliveries to partners (Standard Webhooks) from a transactional outbox."""
