"""Technician alarms: rules over what stations report, a lifecycle (raised →
acknowledged → cleared, history kept, flapping damped) and notifications (e-mail,
signed webhooks).

- `rules`: the vocabulary (conditions, severities, Vietnamese titles, thresholds);
- `service`: thresholds, evaluation and the lifecycle, subscriptions, queries;
- `notify`: the delivery thread (SMTP, webhook) the active worker runs;
- `metrics`: the Prometheus exposition;
- `router`: the JSON API.
"""
