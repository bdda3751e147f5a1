# A small image that runs `responder serve`; configure it with RESPONDER_* variables.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY responder ./responder
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/responder responder \
    && mkdir -p /var/lib/responder && chown responder /var/lib/responder
COPY --from=build /install /usr/local
COPY playbooks /etc/responder/playbooks
ENV RESPONDER_PLAYBOOKS_DIR=/etc/responder/playbooks \
    RESPONDER_DATABASE=/var/lib/responder/responder.db \
    RESPONDER_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
USER responder
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
ENTRYPOINT ["responder", "serve", "--host", "0.0.0.0", "--port", "8000"]
