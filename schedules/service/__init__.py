"""Schedule use cases, one module per sub-domain:

- `scope`: who sees and manages schedule objects (`kernel.ownership`'s rules);
- `sources`: stream sources;
- `programmes`: programmes and their items (spoken text included);
- `specs`: the builder's view of programmes;
- `targets`: a rule's stored targets (resolved through `stations.targets`);
- `rules`: rules, their checks and approval;
- `planning`: the bridge to the pure builder (what dispatch calls);
- `conflicts`: the day's conflicts and rule previews;
- `calendar_links`: signed iCalendar feed links.

Plain keyword-only functions over a `Session`; they flush, the boundary commits
(`kernel.changes.commit_change`).  Other packages use the planning functions below.
"""

from __future__ import annotations

from schedules.service.planning import asset_users, local_today, plan_inputs, station_plans

__all__ = ["asset_users", "local_today", "plan_inputs", "station_plans"]
