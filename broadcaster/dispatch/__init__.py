"""Dispatch: where plans become sound in hamlets.

- `desired`: builds each station's retained desired state (today + tomorrow) from the
  schedules and publishes it when its content changes;
- `outbox`: every command is stored before it is published and followed through its
  acknowledgements; broadcasts (ad-hoc and emergency) are commands to many stations;
- `ingest`: what stations send (births, deaths, reported, telemetry, acks, events);
- `playlog`: proof of play, reconciled against the plan;
- `worker`: the scheduler jobs and threads of the single active worker.
"""
