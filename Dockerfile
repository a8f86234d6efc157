# rentan: one image for every process: `rentan api` (default), `rentan worker`,
# `rentan bpjs-sim`, `rentan db upgrade`. See docker-compose.yml for the production topology.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app

RUN groupadd --system --gid 10001 rentan \
    && useradd --system --uid 10001 --gid rentan --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin rentan

# Project metadata and pinned versions first, then the source packages (bench/ stays out: it is
# for a development checkout).
COPY pyproject.toml constraints.txt README.md ./
COPY rentan ./rentan
COPY core ./core
COPY services ./services
COPY domain ./domain
COPY workflows ./workflows
COPY activities ./activities
COPY api ./api
COPY models ./models
COPY bpjs_sim ./bpjs_sim
COPY migrations ./migrations
COPY worker.py ./

# A regular (non-editable) install: the `rentan` console script and the packages with their
# data files land in site-packages; /app is only the build context.
RUN pip install --no-cache-dir -c constraints.txt . \
    && mkdir -p /app/var \
    && chown rentan:rentan /app/var

USER rentan

EXPOSE 8000

ENTRYPOINT ["rentan"]
CMD ["api"]
