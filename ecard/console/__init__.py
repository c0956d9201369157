"""The operator console: server-rendered pages at ``/console/`` over the operator services."""
