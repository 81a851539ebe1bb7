"""Shared kernel: the few pieces every domain package needs.

`kernel` sits below every domain package (`stations`, `audio_library`, `schedules`) and
imports none of them: the declarative `Base` with one `MetaData` (so cross-package foreign
keys resolve), UTC-aware column types, the domain exception tree the web layer maps to HTTP
status codes, Vietnamese text folding for search, and the authorisation vocabulary
(`Principal`, roles, permissions) that routers check in one place.
"""
