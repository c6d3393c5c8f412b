# The serving image: pestid core + serving extras, no torch.
#   docker build -t pestid-serving .
#   docker run -p 8000:8000 -v $PWD/artifacts:/models -v pestid-data:/data pestid-serving --model /models/model.onnx
# (model.int8.onnx beside model.onnx in /models is the farmer page's offline model.)

# The farmer page's offline runtime: onnxruntime-web from npm, pinned by package-lock.json.
FROM node:20-slim AS web
WORKDIR /web
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts

FROM python:3.11-slim
# The operations listener (/metrics, /openapi.json) binds all of the container's addresses on 9464: publish
# that port only on the monitoring network, never beside 8000.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PESTID_DATA_DIR=/data PESTID_OPS_HOST=0.0.0.0
WORKDIR /app
COPY pyproject.toml README.md ./
# pestid/serving and pestid/training are links to these folders: the wheel installs them as pestid.serving
# and pestid.training. Training's code ships too, but not its dependencies (the [train] extra).
COPY pestid ./pestid
COPY serving ./serving
COPY training ./training
COPY --from=web /web/node_modules/onnxruntime-web/dist/ort.wasm.min.js /web/node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.mjs /web/node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm ./serving/static/vendor/
RUN pip install --no-cache-dir ".[serve]" && useradd --create-home pestid && mkdir -p /data && chown pestid /data
USER pestid
EXPOSE 8000 9464
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz')"
ENTRYPOINT ["pestid", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["--model", "/models/model.onnx"]
