"""The prediction log: every answered prediction (sampled) as a row of a SQL `predictions` table.

`schema` defines the table, `migrations` (Alembic) create and change it, `database` opens it,
`writer` fills it off the event loop, `queries` reads it back (GET /predictions, drift).
"""
