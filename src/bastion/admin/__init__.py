"""The admin listener: REST API (described by OpenAPI), Prometheus metrics and the console. See docs/admin.md."""
