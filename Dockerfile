# Gatehouse: one binary for the control plane and the gateways.
#
#   docker build -t gatehouse .
#   docker run -e GATEHOUSE_CONFIG_ENDPOINT=https://cp.example.com:8090 \
#              -e GATEHOUSE_TOKEN='GatewayKey …' -v gh-backup:/var/lib/gatehouse/backup gatehouse
#
# The default command runs a self-hosted gateway; `gatehouse control-plane` runs a control plane.

# --- build ---------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
# npm installs the browser assets that are embedded into the binary (see package.json).
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so source edits do not refetch them.
COPY Cargo.toml Cargo.lock package.json package-lock.json ./
COPY crates ./crates
RUN npm ci --no-audit --no-fund --ignore-scripts \
 && cargo build --release --locked --bin gatehouse \
 && strip target/release/gatehouse

# --- run -----------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 gatehouse \
 && useradd --system --uid 10001 --gid gatehouse --home-dir /var/lib/gatehouse --shell /usr/sbin/nologin gatehouse \
 && mkdir -p /var/lib/gatehouse/backup /var/lib/gatehouse/data \
 && chown -R gatehouse:gatehouse /var/lib/gatehouse
COPY --from=build /src/target/release/gatehouse /usr/local/bin/gatehouse
USER 10001:10001
WORKDIR /var/lib/gatehouse
ENV GATEHOUSE_LISTEN=0.0.0.0:8080 \
    GATEHOUSE_ADMIN_LISTEN=0.0.0.0:8082 \
    GATEHOUSE_BACKUP_DIR=/var/lib/gatehouse/backup \
    GATEHOUSE_DATA=/var/lib/gatehouse/data \
    GATEHOUSE_LOG_FORMAT=json
VOLUME ["/var/lib/gatehouse/backup"]
# 8080 API traffic, 8082 admin (/healthz, /readyz), 8090 control plane.
EXPOSE 8080 8082 8090
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["gateway"]
