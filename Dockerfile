# Herald in a container: a multi-stage build, run as a non-root user.
# NOT TESTED here (no Docker engine on the machines that run the tests); the Debian package
# (packaging/, crates/cli/tests/package.rs) is. See docs/operations.md, "Packages".
#
#   docker build -t herald .
#   docker run -p 3000:3000 -e HERALD_JWT_KEY=... -v herald-data:/var/lib/herald herald

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p herald

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/herald --create-home --shell /usr/sbin/nologin herald
COPY --from=build /src/target/release/herald /usr/bin/herald
USER herald
WORKDIR /var/lib/herald
VOLUME /var/lib/herald
ENV HERALD_LISTEN=0.0.0.0:3000 \
    HERALD_DATA_DIR=/var/lib/herald
EXPOSE 3000
# SIGTERM drains the streams and exits 0 within --shutdown-timeout (10 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/herald"]
CMD ["serve"]
