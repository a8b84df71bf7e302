# syntax=docker/dockerfile:1.7
# Multi-stage build: release binary in the official Rust image, run on distroless as non-root.
# The release workflow (.github/workflows/release.yml) builds it for linux/amd64 and linux/arm64 and
# publishes it as ghcr.io/fast-launch-exporter/fast-launch-exporter (tags X.Y.Z and X.Y); building
# your own is optional.
#   docker build --build-arg FLE_GIT_REVISION=$(git rev-parse --short HEAD) -t fast-launch-exporter .
#   docker run -p 9849:9849 -e AWS_REGION=us-east-1 fast-launch-exporter        # base credentials, no config file
#   docker run -p 9849:9849 -v $PWD/config.yaml:/etc/fast-launch-exporter/config.yaml:ro \
#     fast-launch-exporter --config.file=/etc/fast-launch-exporter/config.yaml  # your accounts and regions
#   docker run -p 9849:9849 fast-launch-exporter demo                           # no AWS needed
#
# Needs BuildKit (the default builder of Docker 23+): the cargo registry and the target directory are
# cache mounts, so a change under src/ rebuilds the exporter, not aws-sdk-ec2.

# The Rust release the crate's rust-version names (Cargo.toml), pinned.
ARG RUST_VERSION=1.94.1
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# The git revision for fast_launch_exporter_build_info (.git is not copied into the image).
ARG FLE_GIT_REVISION=unknown
ENV FLE_GIT_REVISION=${FLE_GIT_REVISION}
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY tests ./tests
COPY benches ./benches
COPY config ./config
RUN --mount=type=cache,id=cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=fast-launch-exporter-target,target=/src/target \
    cargo build --release --locked --bin fast-launch-exporter \
    && cp target/release/fast-launch-exporter /usr/local/bin/fast-launch-exporter

# distroless/cc: glibc and libgcc for the Rust binary, CA certificates, no shell; user nonroot (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
# The labels' version and revision come from the build: the release workflow passes
# --build-arg VERSION=<the tag without v> and FLE_GIT_REVISION. The default is Cargo.toml's
# version (a test keeps them equal).
ARG VERSION=0.2.0
ARG FLE_GIT_REVISION=unknown
LABEL org.opencontainers.image.title="fast-launch-exporter" \
      org.opencontainers.image.description="Prometheus exporter for AWS EC2 Windows fast launch" \
      org.opencontainers.image.source="https://github.com/fast-launch-exporter/fast-launch-exporter" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${FLE_GIT_REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /usr/local/bin/fast-launch-exporter /usr/local/bin/fast-launch-exporter
USER 65532:65532
EXPOSE 9849
# No shell in the image: the binary probes itself. Give `healthcheck` the same
# --web.listen-address and --web.config.file as the exporter if you change them.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/fast-launch-exporter", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/fast-launch-exporter"]
# No CMD: base credentials and the region of AWS_REGION, no config file (README, "Docker").
