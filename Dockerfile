# Multi-stage build: release binary in the official Rust image, run on distroless as non-root.
#   docker build -t fast-launch-exporter .
#   docker run -p 9849:9849 -e AWS_REGION=us-east-1 fast-launch-exporter
#   docker run -p 9849:9849 fast-launch-exporter demo     # no AWS needed
FROM rust:1-bookworm AS build
WORKDIR /src
# The git revision for fast_launch_exporter_build_info (.git is not copied into the image).
ARG FLE_GIT_REVISION=unknown
ENV FLE_GIT_REVISION=${FLE_GIT_REVISION}
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY tests ./tests
COPY benches ./benches
COPY config ./config
RUN cargo build --release --locked --bin fast-launch-exporter

# distroless/cc: glibc and libgcc for the Rust binary, CA certificates, no shell; user nonroot (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/fast-launch-exporter /usr/local/bin/fast-launch-exporter
# The example config, documented in the README; mount your own over it.
COPY config/example.yaml /etc/fast-launch-exporter/config.yaml
USER 65532:65532
EXPOSE 9849
ENTRYPOINT ["/usr/local/bin/fast-launch-exporter"]
CMD ["--config.file=/etc/fast-launch-exporter/config.yaml"]
