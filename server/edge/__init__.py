"""The edge of the server: what every request passes before and after a route.

Middleware, authentication, rate limits, admission, the fast lane, error handlers and the one
table that says, for each path, what it requires (`server.edge.route_policy`). Nothing here knows
models.
"""
