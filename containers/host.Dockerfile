# edgeq on a host (x86_64 or arm64): check, calibrate, deploy, smoke, rollout.
# Build: docker build -f containers/host.Dockerfile -t edgeq .
# Run:   docker run --rm -v "$PWD:/work" -v "$HOME/.ssh:/root/.ssh:ro" -w /work edgeq check recipes/squeezenet-digits/recipe.yaml -t jetson-orin
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends openssh-client \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/edgeq
COPY pyproject.toml README.md ./
COPY edgeq ./edgeq
COPY targets ./targets
RUN pip install --no-cache-dir .

ENTRYPOINT ["edgeq"]
CMD ["--help"]
