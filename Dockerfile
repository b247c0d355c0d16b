# The Kiln image: one image, two roles (`kiln api`, `kiln worker`), chosen by the command.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY kiln ./kiln
COPY api ./api
COPY workflows ./workflows
COPY activities ./activities
COPY worker.py ./
RUN pip install --no-cache-dir .
EXPOSE 8000
CMD ["kiln", "api"]
