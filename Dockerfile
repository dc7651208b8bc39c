# One image for api, worker, beat, flower and the one-shot migration.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

# opencv (under the offline OCR engine) needs libGL and GLib; Debian's handwriting-style fonts
# draw the demo's sample papers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 fonts-wqy-microhei fonts-arphic-ukai fonts-humor-sans \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 markq
WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
COPY api ./api
COPY worker ./worker
COPY shared ./shared
COPY client ./client
COPY bench ./bench
# the locked versions (the test tools in the lock are small), then markq without resolving again
RUN pip install --no-cache-dir -r requirements.lock && pip install --no-cache-dir --no-deps .

USER markq
EXPOSE 8000
# The access log leaves query strings out (%(U)s, not %(r)s): share links carry their token there.
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "4", "--access-logfile", "-", \
     "--access-logformat", "%(h)s %(t)s \"%(m)s %(U)s %(H)s\" %(s)s %(b)s %(L)s", "api:create_app()"]
