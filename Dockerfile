# Warren as a drop-in for the `rabbitmq` image: a static binary on an empty (scratch)
# image, with RabbitMQ's command shims, ports, data directory and configuration paths.
#
#   docker build -t warren .
#   docker run -p 5672:5672 -e RABBITMQ_DEFAULT_USER=app -e RABBITMQ_DEFAULT_PASS=s3cret warren
#
# The build stage compiles for musl (static, no libc needed at run time). To package
# binaries built outside Docker instead (e.g. `cargo build --release --target
# x86_64-unknown-linux-musl`, stripped, on a machine that cannot pull rust:alpine), pass the
# directory holding `warren` and `warren-shim` as the `build` stage:
#   podman build --build-context build=target/x86_64-unknown-linux-musl/release \
#       --target image -t warren .

ARG RUST_IMAGE=rust:1-alpine

FROM ${RUST_IMAGE} AS compile
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN CARGO_PROFILE_RELEASE_STRIP=true cargo build --release --locked --bins \
 && mkdir /build \
 && cp target/release/warren target/release/warren-shim /build/

# The binaries; replaceable with --build-context build=DIR.
FROM scratch AS build
COPY --from=compile /build/ /

FROM scratch AS image
# docker/rootfs: /etc/warren/container.toml (listen on every interface, under any
# rabbitmq.conf), /etc/rabbitmq/conf.d/10-defaults.conf (guest allowed from the network, as
# the rabbitmq image) and the shims' symlinks. docker/data makes the
# data directory, owned by the user Warren runs as (uid 999, as the rabbitmq image).
COPY docker/rootfs/ /
COPY --chown=999:999 docker/data/ /var/lib/rabbitmq/
COPY --from=build /warren /warren-shim /usr/local/bin/
ENV PATH=/usr/local/bin \
    HOME=/var/lib/rabbitmq \
    WARREN_DEFAULTS=/etc/warren/container.toml
USER 999:999
VOLUME /var/lib/rabbitmq
# AMQP, AMQPS, management HTTP API, Prometheus: the rabbitmq image's ports. Only 5672 is
# served today; TLS, the HTTP API and metrics are not in Warren yet.
EXPOSE 5672 5671 15672 15692
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["rabbitmq-diagnostics", "-q", "ping"]
ENTRYPOINT ["/usr/local/bin/warren", "--data-dir", "/var/lib/rabbitmq"]
