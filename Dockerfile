# onair in a container. Build: docker build -t onair .
# Run:   docker run -p 1935:1935 -p 8080:8080 -v $PWD/onair.toml:/app/onair.toml onair
# (set http.listen = "0.0.0.0:8080" in onair.toml to reach the API and preview from outside)
#
# The build stage runs the same steps as the README on Debian 12 (bookworm): the project's own
# tools/setup-debian.sh, then a release build.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY tools/setup-debian.sh tools/setup-debian.sh
COPY web/package.json web/package-lock.json web/
COPY tests/ui/requirements.txt tests/ui/requirements.txt
RUN bash tools/setup-debian.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release -p onair

FROM debian:bookworm-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
      gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-x glib-networking \
      fonts-dejavu-core ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /src/target/release/onair /usr/local/bin/onair
COPY scripts/ scripts/
EXPOSE 1935 8080
# Built-in defaults listen on 127.0.0.1:8080 for HTTP; inside a container publish it on all
# interfaces unless the config says otherwise.
ENV ONAIR_HTTP__LISTEN=0.0.0.0:8080
ENTRYPOINT ["onair"]
CMD ["run"]
