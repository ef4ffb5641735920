# lofianime in a container: build with cargo-leptos, run as a non-root user on
# a slim image with the binary and the site folder. Not built by the test suite
# (no Docker there); see "Deploying" in the README.
#
#   docker build -t lofianime .
#   docker run -p 3000:3000 -e REPLICATE_API_TOKEN=... lofianime

FROM rust:1.95-bookworm AS build
# The same tool versions scripts/setup installs.
RUN rustup target add wasm32-unknown-unknown \
 && CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo install cargo-leptos --version 0.3.6 --locked --features no_downloads \
 && cargo install wasm-bindgen-cli --version 0.2.130
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && npm install -g binaryen@132 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo leptos build --release --precompress

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin lofianime \
 && mkdir -p /app/data \
 && chown lofianime /app/data
WORKDIR /app
COPY --from=build /src/target/release/lofianime /app/lofianime
# The content hashes of the site's file names, read beside the binary.
COPY --from=build /src/target/release/hash.txt /app/hash.txt
COPY --from=build /src/target/site /app/site
COPY --from=build /src/Leptos.toml /app/Leptos.toml
ENV LEPTOS_SITE_ADDR=0.0.0.0:3000 \
    LEPTOS_SITE_ROOT=site \
    LEPTOS_SITE_PKG_DIR=pkg \
    LEPTOS_OUTPUT_NAME=lofianime \
    LEPTOS_HASH_FILES=true \
    RUST_LOG=info
USER lofianime
EXPOSE 3000
# SIGTERM starts the graceful shutdown (shutdown.grace_secs, 30 s by default):
# give the platform's stop timeout a little more than that.
STOPSIGNAL SIGTERM
CMD ["/app/lofianime"]
