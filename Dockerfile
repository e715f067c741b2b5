# syntax=docker/dockerfile:1
# The shoutflowd image the Kubernetes manifests and the Helm chart deploy
# (shoutflow/shoutflowd:<version>, version = project() in CMakeLists.txt).
#
#   docker build -t shoutflow/shoutflowd:0.1.0 .
#
# Two stages on Debian bookworm, the only source of libraries:
#   build    installs and builds exactly as scripts/run and scripts/test do
#            (scripts/lib.sh: sf_install_packages, sf_build), so the image
#            never drifts from what the test suite built and tested;
#   runtime  only the shared libraries the two binaries load (the list below;
#            tests/deploy/image_test.js checks it against `ldd` of the build),
#            shoutflowd and shoutflowctl, a fixed non-root user.
# The project's machines cannot reach an image registry, so this file is
# checked offline by ctest (deploy.image), not built there.

ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
# The scripts alone first: the package layer is rebuilt only when they change.
COPY scripts/ scripts/
RUN set -euo pipefail; source scripts/lib.sh; sf_install_packages; rm -rf /var/lib/apt/lists/*
COPY . .
RUN set -euo pipefail; source scripts/lib.sh; sf_build; \
    install -D -s -m 0755 build/bin/shoutflowd /out/shoutflowd; \
    install -D -s -m 0755 build/bin/shoutflowctl /out/shoutflowctl

FROM ${DEBIAN_IMAGE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Debian packages of the libraries shoutflowd and shoutflowctl link (their own
# dependencies come along); ca-certificates for TLS to a managed database.
ARG RUNTIME_PACKAGES="\
    libcaf-core0.17 libcaf-io0.17 \
    libgrpc++1.51 libgrpc29 libprotobuf32 \
    libpqxx-6.4 libpq5 \
    libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 \
    libsodium23 libtcmalloc-minimal4 \
    ca-certificates"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${RUNTIME_PACKAGES} \
 && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid, the one the manifests' securityContext names.
RUN groupadd --system --gid 10001 shoutflow \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin shoutflow
COPY --from=build /out/shoutflowd /out/shoutflowctl /usr/local/bin/

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="shoutflowd" \
      org.opencontainers.image.description="ShoutFlow node (shoutflowd) and admin CLI (shoutflowctl)" \
      org.opencontainers.image.version="${VERSION}"

# In a container the node listens on every interface and logs JSON lines.
ENV SHOUTFLOW_BIND=0.0.0.0 \
    SHOUTFLOW_LOG_FORMAT=json
USER 10001:10001
# command, query, admin (gRPC), CAF (node to node), metrics (HTTP).
EXPOSE 50051 50052 50053 50054 9464
ENTRYPOINT ["/usr/local/bin/shoutflowd"]
