# syntax=docker/dockerfile:1
#
# docker build -t cognito-authz .
#
# Build: the Rust toolchain image (Debian 12). The vendored Envoy protos are compiled with protox
# (pure Rust, build.rs), so no protoc is needed; aws-lc-rs and mimalloc need only the C compiler
# the image already has.
FROM rust:1-bookworm AS build
WORKDIR /src

# Dependencies first, in their own layer: rebuilt only when Cargo.toml, Cargo.lock, build.rs or
# the protos change, not on every source edit. Stub sources stand in for src/ (benches/ is named
# by Cargo.toml, so it must be present for the manifest to load).
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src

# The service itself. `touch` makes sure cargo rebuilds it over the stub build, whatever the
# timestamps COPY gave the files.
COPY src ./src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && install -D -m 0755 target/release/cognito-authz /out/cognito-authz \
    && mkdir -p /out/data

# Run: distroless (glibc, libgcc, CA certificates, no shell, no package manager), as the image's
# unprivileged "nonroot" user, named numerically so Kubernetes' runAsNonRoot can verify it.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/cognito-authz /usr/local/bin/cognito-authz
# Local state for a single replica using the default file revocation store
# (file:$COGNITO_AUTHZ_DATA_DIR/revocations.jsonl): mount a persistent volume here. Replicas use
# Redis instead (COGNITO_AUTHZ_REVOCATION_STORE=redis://...) and write nothing.
COPY --from=build --chown=65532:65532 /out/data /var/lib/cognito-authz
ENV COGNITO_AUTHZ_DATA_DIR=/var/lib/cognito-authz
USER 65532:65532

# 9001: gRPC ext_authz + grpc.health.v1; 8080: HTTP module (/auth/*, /healthz);
# 9090: admin (/metrics). The admin listener binds 127.0.0.1 unless
# COGNITO_AUTHZ_ADMIN_LISTEN=0.0.0.0:9090 is set (deploy/kubernetes sets it); never publish it
# where proxy traffic can reach it.
EXPOSE 9001 8080 9090

# Settings come from COGNITO_AUTHZ_* environment variables (or flags appended to `docker run`).
ENTRYPOINT ["/usr/local/bin/cognito-authz", "serve"]
