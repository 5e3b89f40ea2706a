# ssebridge container image.
#
#   docker build -t ssebridge --build-arg VERSION=$(git describe --always) .
#   docker run --rm -p 8080:8080 \
#     -v $PWD/my.yaml:/etc/ssebridge/config.yaml:ro ssebridge
#
# The configuration must listen on 0.0.0.0:8080 (http.addr) for the published
# port and the health check to reach it, and should keep data_dir at
# /var/lib/ssebridge, the volume.
#
# Base images are pinned: golang to an exact release; distroless publishes
# no version tags, so README.md ("Docker") says how to pin it by digest.

FROM golang:1.26.8-bookworm AS build
WORKDIR /src
# Dependencies first: this layer stays cached until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# CGO off: a static binary that runs on an image without libc.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/ssebridge ./cmd/ssebridge \
    && mkdir -p /out/data

# distroless/static: no shell, no package manager, CA certificates for
# https:// feeds, and a "nonroot" user (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ssebridge /usr/local/bin/ssebridge
# Owned by the runtime user, so a fresh named volume mounted here is writable.
COPY --from=build --chown=65532:65532 /out/data /var/lib/ssebridge
USER 65532:65532
WORKDIR /var/lib/ssebridge
VOLUME ["/var/lib/ssebridge"]
EXPOSE 8080
# No shell or curl in the image: the binary probes its own /readyz.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/ssebridge", "healthcheck", "-url", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["/usr/local/bin/ssebridge"]
CMD ["run", "-config", "/etc/ssebridge/config.yaml"]
