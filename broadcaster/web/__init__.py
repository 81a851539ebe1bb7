"""The web layer: error mapping, middleware, health checks, dashboard."""
