# The oddsflow image: workers, ingestors and sinks run from it (see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY oddsflow ./oddsflow
COPY streams ./streams
COPY processors ./processors
COPY sinks ./sinks
COPY schemas ./schemas
COPY bench ./bench
COPY api ./api
COPY topology.yaml ./
RUN pip install --no-cache-dir ".[api]"
ENTRYPOINT ["oddsflow"]
