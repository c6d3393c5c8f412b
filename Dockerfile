# The serving image: pestid core + serving extras, no torch.
#   docker build -t pestid-serving .
#   docker run -p 8000:8000 -v $PWD/artifacts:/models -v pestid-data:/data pestid-serving --model /models/model.onnx
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PESTID_DATA_DIR=/data
WORKDIR /app
COPY pyproject.toml README.md ./
# pestid/serving and pestid/training are links to these folders: the wheel installs them as pestid.serving
# and pestid.training. Training's code ships too, but not its dependencies (the [train] extra).
COPY pestid ./pestid
COPY serving ./serving
COPY training ./training
RUN pip install --no-cache-dir ".[serve]" && useradd --create-home pestid && mkdir -p /data && chown pestid /data
USER pestid
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz')"
ENTRYPOINT ["pestid", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["--model", "/models/model.onnx"]
