# One image for api, worker, beat, flower and the one-shot migration.
FROM python:3.11-slim

# MALLOC_ARENA_MAX: glibc gives every thread its own malloc arena; two keep a threaded
# gunicorn worker's memory from growing with its threads (bench.intake measures the growth).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MALLOC_ARENA_MAX=2

# opencv under the offline OCR engine is the headless build: it links no libGL or GLib (ldd).
# Debian's handwriting-style fonts draw the demo's sample papers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-wqy-microhei fonts-arphic-ukai fonts-humor-sans \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 markq
WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
COPY api ./api
COPY worker ./worker
COPY shared ./shared
COPY client ./client
COPY bench ./bench
# the locked versions (less the browser driver the web app's tests use; the other test tools are
# small), then markq without resolving again
RUN sed '/^playwright==/d' requirements.lock > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt && pip install --no-cache-dir --no-deps . \
    && rm /tmp/requirements.txt

USER markq
EXPOSE 8000
# Threaded workers (gthread): a slow upload holds one thread, not a whole worker, and the worker
# keeps answering its heartbeat, so it is not killed after --timeout as a sync worker was. Pages
# go straight to storage by URL; the multipart path is for a few pages at a time.
# The access log leaves query strings out (%(U)s, not %(r)s): share links carry their token there.
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--worker-class", "gthread", "--workers", "2", "--threads", "8", \
     "--timeout", "120", "--keep-alive", "5", "--access-logfile", "-", \
     "--access-logformat", "%(h)s %(t)s \"%(m)s %(U)s %(H)s\" %(s)s %(b)s %(L)s", "api.wsgi:app"]
