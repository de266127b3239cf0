"""Models, live: resolving and loading them from the registry, the gate a new version must pass,
following an alias (polling and webhooks), and the store a request reads the served model from.

Nothing here knows HTTP routes or wire formats.
"""
