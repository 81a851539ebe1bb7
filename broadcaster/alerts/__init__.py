"""CAP 1.2 alerts: official warnings taken in from authorised sources, and our own
emergencies exported as CAP.

- `cap`: safe parsing, validation against the OASIS schema, reading and writing;
- `vocabulary`: CAP codes, QĐ 18/2021 risk levels, the mapping to tier and repeat;
- `areas`: CAP areas (polygon, circle, geocode) to stations;
- `service`: sources and their tokens, the ingest rules, approval, airing through the
  broadcast service of `broadcaster.dispatch`;
- `router`: the ingest endpoint, the management API and the CAP feed.
"""
