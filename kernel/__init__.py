"""Shared kernel: the few pieces every domain package needs, one home for each rule.

`kernel` sits below every domain package (`stations`, `audio_library`, `schedules`) and
imports none of them: the declarative `Base` with one `MetaData` (so cross-package foreign
keys resolve), UTC-aware column types, the domain exception tree the web layer maps to HTTP
status codes, Vietnamese text folding for search, the authorisation vocabulary
(`Principal`, roles, permissions), and the rules several packages share: bulletin tiers
(`tiers`), the approval workflow (`approval`), who sees and manages area-owned objects
(`ownership`), the audit log and plan signal, and the one change helper (`changes`).
"""
