# The hal0 image: the `hal0` binary (gateway, controller, device plugins, `hal0 serve`) on
# Debian slim, as a non-root user, with CA certificates for https upstreams.
#
#   docker build -t hal0:dev .                    # the image users run
#   docker build --target e2e -t hal0:e2e .       # plus hal0-fake-provider, for e2e/kube
#
# docs/image.md says how to run it, push it to your registry and point deploy/ or the chart at
# it. Build inputs: Cargo.toml, Cargo.lock, build.rs, proto/, src/, deploy/systemd/ (embedded in
# the binary); .dockerignore keeps target/ and the rest out of the context.

ARG DEBIAN=bookworm

FROM rust:1-${DEBIAN} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY deploy/systemd ./deploy/systemd
COPY src ./src
# The registry and target caches make rebuilds incremental (BuildKit); the binaries are copied
# out of the cache mount so the next stage can take them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin hal0 --bin hal0-fake-provider \
    && mkdir -p /out \
    && cp target/release/hal0 target/release/hal0-fake-provider /out/

FROM debian:${DEBIAN}-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 65532 hal0 \
    && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/hal0 --create-home \
       --shell /usr/sbin/nologin hal0 \
    && mkdir -p /etc/hal0 && chown hal0:hal0 /etc/hal0
COPY --from=build /out/hal0 /usr/local/bin/hal0
USER 65532:65532
WORKDIR /var/lib/hal0
# hal0.toml is read from (and written by the API to) /etc/hal0; models go to
# ~/.local/share/hal0/models = /var/lib/hal0/.local/share/hal0/models unless the config says.
ENV HOME=/var/lib/hal0 \
    HAL0_CONFIG=/etc/hal0/hal0.toml
VOLUME ["/var/lib/hal0"]
EXPOSE 8080
ENTRYPOINT ["hal0"]
CMD ["serve"]

# The e2e/kube image: the same plus hal0-fake-provider (a test double for llama.cpp).
FROM runtime AS e2e
COPY --from=build /out/hal0-fake-provider /usr/local/bin/hal0-fake-provider

# The default target (last stage): the runtime image.
FROM runtime AS image
