"""The prediction log: every answered prediction (sampled) as a row of a SQL `predictions` table.

`schema` defines the table, `migrations` (Alembic) create and change it, `database` opens it.
`writer` queues each worker's answers and sends them (`slices`, `frames`) to a writer process of
its own (`writer_process`), which makes their rows (`rows`) and writes them (`inserts`).
`queries` reads the table back (GET /predictions, drift).
"""
