#!/bin/sh
# pip in the image's venv, trusting the optional `hostca` build secret on top of pip's own
# (certifi) CA bundle. Without the secret this is plain pip.
set -eu
py=/opt/bids_regionx/bin/python
if [ -s /run/secrets/hostca ]; then
  bundle=$("$py" -c 'import pip._vendor.certifi as c; print(c.where())')
  cat "$bundle" /run/secrets/hostca > /tmp/pip-ca.pem
  export PIP_CERT=/tmp/pip-ca.pem
fi
exec "$py" -m pip "$@"
