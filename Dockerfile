# One image holds the bureauhub binaries (hub, agent, loadgen, booking,
# healthcode) and the shipped rule files; BINARY chooses the default
# entrypoint:
#
#   docker build -t bureauhub/bureauhub:dev .                     # entrypoint hub
#   docker build --build-arg BINARY=agent -t bureauhub/agent:dev .
#
# docker-compose.yml and the Kubernetes manifests use one image and name the
# binary in `entrypoint`/`command`. The `certs` target is the small image
# that generates the compose demo's TLS files (deploy/compose/gen-certs.sh).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Pure Go (bbolt, clickhouse-go): static binaries, no libc needed at run time.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ \
	./cmd/hub ./cmd/agent ./cmd/loadgen ./cmd/booking ./cmd/healthcode

# Demo certificates: a throw-away CA and a hub server certificate.
FROM debian:bookworm-slim AS certs
RUN apt-get update && apt-get install -y --no-install-recommends openssl \
	&& rm -rf /var/lib/apt/lists/*
COPY deploy/compose/gen-certs.sh /usr/local/bin/gen-certs
ENTRYPOINT ["/usr/local/bin/gen-certs"]

FROM debian:bookworm-slim
ARG BINARY=hub
# ca-certificates: the agent verifies the hub against the system pool
# unless hub.tls.ca_file is set, and receivers post to HTTPS webhooks.
# The state directories belong to the non-root user: Docker copies an image
# directory's owner into a new named volume mounted on it.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
	&& rm -rf /var/lib/apt/lists/* \
	&& groupadd --system --gid 10001 bureauhub \
	&& useradd --system --uid 10001 --gid bureauhub --home-dir /var/lib/bureauhub --shell /usr/sbin/nologin bureauhub \
	&& install -d -o bureauhub -g bureauhub -m 0750 /var/lib/bureauhub /var/lib/bureauhub-agent
COPY --from=build /out/ /usr/local/bin/
COPY rules/ /usr/share/bureauhub/rules/
RUN ln -s /usr/local/bin/${BINARY} /usr/local/bin/bureauhub \
	&& test -x /usr/local/bin/${BINARY}
USER 10001:10001
WORKDIR /var/lib/bureauhub
# hub: 9300 gRPC (agents), 9301 HTTP (API, /metrics, /-/healthy);
# agent: 9101 HTTP (/metrics, remote_write).
EXPOSE 9300 9301 9101
ENTRYPOINT ["/usr/local/bin/bureauhub"]
