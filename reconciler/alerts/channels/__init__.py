"""Alert channels beside Slack: a generic signed webhook, PagerDuty, Microsoft Teams, email.

Every channel goes through the same outbox as Slack (queued in the run's transaction,
claimed, paced, retried with backoff and ``Retry-After``, stopped on a refusal, recorded
durably). A channel's outbox rows are routed ``channel:<name>``; what each row holds is the
channel's own rendering, made when the run is recorded. Secrets (URLs, signing secrets,
routing keys, SMTP passwords) are resolved only when a message is sent.
"""
