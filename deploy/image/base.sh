#!/usr/bin/env bash
# Make the Debian bookworm Python 3.11 base images locally, without a registry (mmdebstrap +
# podman import): a builder base (with venv/pip) and a smaller runtime base (interpreter and CA
# certificates, no documentation or locales). Skips an image that already exists.
#   usage: deploy/image/base.sh BUILDER_IMAGE RUNTIME_IMAGE
set -euo pipefail
builder=$1 runtime=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
slim=(--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/man/*'
      --dpkgopt='path-exclude=/usr/share/info/*')
make_base() {  # name, packages
  if podman image exists "$1"; then echo "base image $1 exists"; return; fi
  echo "making base image $1 with mmdebstrap (about a minute)"
  mmdebstrap --quiet --variant=minbase --include="$2" "${slim[@]}" bookworm "$work/rootfs.tar"
  podman import --quiet "$work/rootfs.tar" "$1" >/dev/null
  rm -f "$work/rootfs.tar"
}
make_base "$builder" python3.11,python3.11-venv,python3-pip,ca-certificates
make_base "$runtime" python3.11,ca-certificates
