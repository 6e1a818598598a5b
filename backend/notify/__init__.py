"""Notifications: on-call rota, policies, the durable outbox and its dispatcher, channels."""
