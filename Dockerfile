# syntax=docker/dockerfile:1
# bids_regionx BIDS App image.
#
#   docker build -t bids_regionx:0.1.0 .                 (or ../shared/tools/container-build.sh)
#   docker run --rm --read-only --network none --user "$(id -u):$(id -g)" \
#       -v /data/fmriprep:/data:ro -v /data/maps:/maps:ro -v "$PWD/out:/out" -v "$PWD/work:/work" \
#       bids_regionx:0.1.0 /data /out participant -d atlases=/maps --atlas NAME -w /work
#
# Two stages from the same Debian base (no other registry image): the builder makes a venv with
# Debian's python3.11 and installs the package from this source tree into it, with dependency
# ranges from pyproject.toml and exact versions from docker/constraints.txt (the environment the
# tests passed in; regenerate with docker/freeze-constraints.py); the runtime stage gets Debian's
# python3.11 and a copy of that venv, nothing else (no compiler, no pip). The builder has a C
# compiler for the package's one extension (the random walker's kernels, Cython from PyPI).
#
# Build arguments: BASE_IMAGE, VERSION (must equal the package version: the build checks it),
# VCS_REF, BUILD_DATE (OCI labels), IMAGE_REF (recorded in GeneratedBy.Container of outputs).
# Optional build secret `hostca`: an extra CA bundle for pip behind an intercepting proxy
# (`--secret id=hostca,src=/etc/ssl/certs/ca-certificates.crt`); the build works without it.
ARG BASE_IMAGE=debian:bookworm-slim

# --------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS builder
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq \
 && apt-get install -y -q --no-install-recommends python3 python3-venv python3-dev gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_NO_INPUT=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PIP_DEFAULT_TIMEOUT=120

# pip with the optional CA bundle appended to its own (certifi) bundle.
COPY docker/pip-ca.sh /usr/local/bin/pip-ca

RUN chmod 0755 /usr/local/bin/pip-ca && python3 -m venv /opt/bids_regionx
RUN --mount=type=secret,id=hostca \
    pip-ca install -q "pip>=24"

# Dependencies first (their own layer: editing the package does not reinstall numpy & co.).
COPY docker/constraints.txt /tmp/constraints.txt
COPY pyproject.toml /src/pyproject.toml
RUN --mount=type=secret,id=hostca \
    /opt/bids_regionx/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
 && pip-ca install -q -c /tmp/constraints.txt -r /tmp/requirements.txt

# The package itself, built as a wheel from the source tree (PEP 517, setuptools from PyPI).
# The build context is what .dockerignore allows: pyproject.toml, setup.py, MANIFEST.in,
# README.md, bids_regionx/, boilerplate/ (methods templates), docker/.
COPY . /src
RUN --mount=type=secret,id=hostca \
    pip-ca wheel -q --no-deps -w /tmp/wheels /src \
 && pip-ca install -q --no-deps /tmp/wheels/bids_regionx-*.whl \
 && /opt/bids_regionx/bin/python -m pip check
RUN test -x /opt/bids_regionx/bin/bids_regionx \
 || { echo 'no bids_regionx console script: pyproject.toml needs [project.scripts]' >&2; exit 1; }
# No installer at run time (nothing imports pkg_resources), and no test suites of the
# dependencies (~150 MB; nibabel's are kept: nibabel.pydicom_compat imports one).
RUN /opt/bids_regionx/bin/python -m pip uninstall -q -y setuptools pip \
 && find /opt/bids_regionx/lib -depth -type d -name tests -not -path '*/nibabel/*' \
         -exec rm -rf {} +

# --------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime
ARG BASE_IMAGE
ARG DEBIAN_FRONTEND=noninteractive
# python3.11 with its full standard library (sqlite3 for pybids); nothing else.
RUN apt-get update -qq \
 && apt-get install -y -q --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
           /usr/share/doc/* /usr/share/man/* /usr/share/info/*

COPY --from=builder /opt/bids_regionx /opt/bids_regionx

ARG VERSION=0.1.0
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown
ARG IMAGE_REF=bids_regionx:${VERSION}

# Any UID, read-only root: nothing below needs a writable image. The app puts the matplotlib,
# nipype, pybids and joblib caches under its work dir (-w); HOME=/tmp only catches strays from
# third-party code when the runtime provides a writable /tmp (podman --read-only, Apptainer).
# Thread counts: one BLAS/OpenMP thread per process (parallelism comes from --nprocs), which is
# also what makes outputs identical to the tested native runs.
ENV PATH=/opt/bids_regionx/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONNOUSERSITE=1 \
    MPLBACKEND=Agg \
    NIPYPE_NO_ET=1 \
    NO_ET=1 \
    OPENBLAS_NUM_THREADS=1 \
    OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    BIDS_REGIONX_CONTAINER_IMAGE=${IMAGE_REF}

# The labels must describe what was installed: fail the build if VERSION is stale.
RUN got="$(bids_regionx --version)" \
 && if [ "$got" != "bids_regionx ${VERSION}" ]; then \
      echo "ARG VERSION=${VERSION} but the package says '${got}': update the Dockerfile" >&2; \
      exit 1; \
    fi \
 && bids_regionx --help >/dev/null

LABEL org.opencontainers.image.title="bids_regionx" \
      org.opencontainers.image.description="BIDS App: split 4D maps into regions; denoised region time series and connectomes from fMRIPrep derivatives" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.source="https://github.com/bids-regionx/bids_regionx" \
      org.opencontainers.image.url="https://github.com/bids-regionx/bids_regionx" \
      org.opencontainers.image.documentation="https://github.com/bids-regionx/bids_regionx/blob/main/docs/containers.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

WORKDIR /tmp
ENTRYPOINT ["bids_regionx"]
