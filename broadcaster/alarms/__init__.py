"""Technician alarms: rules over what stations report, a lifecycle (raised →
acknowledged → cleared, history kept, flapping damped) and notifications (e-mail,
signed webhooks).

- `rules`: the vocabulary (conditions, severities, Vietnamese titles, thresholds);
- `service`: thresholds, evaluation and the lifecycle, subscriptions, queries
  (availability, disconnections, open alarms by station);
- `notify`: the delivery thread (SMTP, webhook) the active worker runs;
- `queue`: one delivery queue per subscriber (digests, backoff, bounded);
- `router`: the JSON API.

The Prometheus exposition of alarm counts lives with the other metrics in
`broadcaster.web.metrics`.
"""
