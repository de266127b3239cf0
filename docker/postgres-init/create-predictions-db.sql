-- The API's prediction log (PREDICTION_LOG_URL) lives in a database of its own next to MLflow's
-- backend store. PostgreSQL's official image runs this once, as POSTGRES_USER (who then owns the
-- database), when it initialises an empty data directory; on an existing volume, run it by hand:
--   docker compose -f docker-compose.mlflow.yml exec postgres psql -U mlflow -d mlflow -c 'CREATE DATABASE predictions'
-- The API creates and migrates the `predictions` table itself (PREDICTION_LOG_MIGRATE).
CREATE DATABASE predictions;
