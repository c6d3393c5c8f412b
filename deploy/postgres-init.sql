-- Run once by the postgres image on an empty volume (docker-compose.yml): MLflow's registry gets its own database.
CREATE DATABASE mlflow OWNER pestid;
