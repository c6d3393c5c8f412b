# The MLflow tracking server and model registry as docker-compose.yml runs it: runs and the registry in PostgreSQL,
# artefacts in the S3 bucket, started by run-mlflow.sh from the environment (the names in mlflow.env.example).
#   docker build -f deploy/mlflow.Dockerfile -t pestid-mlflow deploy
# What it installs is pyproject.toml's [registry] extra. Keep MLFLOW_VERSION at least the trainers' MLflow: a server
# older than its clients lacks the calls they make.
FROM python:3.11-slim
ARG MLFLOW_VERSION=3.17.2
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 MLFLOW_HOST=0.0.0.0 MLFLOW_PORT=5000
RUN pip install --no-cache-dir "mlflow==${MLFLOW_VERSION}" "psycopg[binary]>=3.1" "boto3>=1.35" \
    && useradd --create-home mlflow
COPY run-mlflow.sh /usr/local/bin/run-mlflow.sh
USER mlflow
WORKDIR /home/mlflow
EXPOSE 5000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health')"
ENTRYPOINT ["run-mlflow.sh"]
