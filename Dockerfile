# Dockerfile: the casemail image compose.yaml runs. Every process binary
# on Debian 12, run as the unprivileged user casemail; which process a
# container is comes from its command (casemail-router, casemail-fetcher,
# casemail-parser, casemail-sender). The packages are those `make deps`
# installs to build, and the libraries the binaries link.
FROM debian:12-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config libzmq3-dev libczmq-dev libgmime-3.0-dev \
      libcurl4-openssl-dev libpq-dev libssl-dev libmicrohttpd-dev libjansson-dev \
      libxml2-dev libidn2-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make -j"$(nproc)" bin/casemail bin/casemail-router bin/casemail-fetcher \
      bin/casemail-parser bin/casemail-sender

FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates libczmq4 libzmq5 libgmime-3.0-0 libcurl4 libpq5 libssl3 \
      libmicrohttpd12 libjansson4 libxml2 libidn2-0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/casemail --create-home casemail \
 && mkdir -p /var/lib/casemail/key /var/lib/casemail/state /etc/casemail/certs \
 && chown -R casemail:casemail /var/lib/casemail \
 && chmod 700 /var/lib/casemail/key /var/lib/casemail/state
COPY --from=build /src/bin/casemail /src/bin/casemail-router /src/bin/casemail-fetcher \
     /src/bin/casemail-parser /src/bin/casemail-sender /usr/local/bin/
USER casemail
WORKDIR /var/lib/casemail
ENV CASEMAIL_HOME=/var/lib/casemail/state CASEMAIL_LOCAL=0
CMD ["casemail-router"]
