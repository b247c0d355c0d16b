# The Kiln image: one image, three roles (`kiln migrate`, `kiln api`, `kiln worker`), chosen by
# the command. It runs as the unprivileged user `kiln`; docker-compose.yml runs only the worker
# as root (it holds the Docker socket, root-equivalent anyway, and installs the host firewall
# rules of the build network, hence iptables here).

# The dashboard's one npm dependency (socket.io-client), served by Kiln itself.
FROM node:20-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

FROM python:3.11-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends git iptables \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 kiln \
    && useradd --system --uid 10001 --gid kiln --home-dir /home/kiln --create-home \
       --shell /usr/sbin/nologin kiln
WORKDIR /app
COPY pyproject.toml README.md ./
COPY kiln ./kiln
COPY api ./api
COPY workflows ./workflows
COPY activities ./activities
COPY cli ./cli
COPY worker.py ./
COPY web/index.html ./web/index.html
COPY web/src ./web/src
COPY --from=web /web/node_modules ./web/node_modules
# Editable: the API serves web/ from beside its package (api/web.py).
RUN pip install --no-cache-dir -e . \
    && python -c "import api.web as w; assert w.VENDOR.is_dir(), w.VENDOR"
USER kiln
EXPOSE 8000
CMD ["kiln", "api"]
