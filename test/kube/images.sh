#!/usr/bin/env bash
# The cluster's images, all built here (no registry):
#   images.sh build   pause and CoreDNS images from the binaries of build-tools.sh (buildah, FROM scratch;
#                     rebuilt only when a binary changes) and the spokelink image (scripts/build-image).
#   images.sh import  copies them from podman's storage into the cluster's containerd (podman save | ctr import).
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
repo="$(cd "$KUBE_DIR/../.." && pwd)"
# shellcheck source=../../scripts/lib/image-env.sh
source "$repo/scripts/lib/image-env.sh"

# scratch_image NAME BINARY UID: an image holding only BINARY as /NAME, run as UID, labelled with its hash.
scratch_image() {
  local image="$1" binary="$2" uid="$3" name
  name="$(basename "$binary")"
  local sum; sum="$(sha256sum <"$binary" | cut -c1-16)"
  if [ "$(podman image inspect --format '{{ index .Labels "io.spokelink.kube.binary" }}' "$image" 2>/dev/null || true)" = "$sum" ]; then
    echo "$image: cached ($name $sum)"
    return
  fi
  local old; old="$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
  local ctr; ctr="$(buildah from scratch)"
  buildah copy --quiet --chmod 0755 "$ctr" "$binary" "/$name" >/dev/null
  buildah config --entrypoint "[\"/$name\"]" --cmd '' --user "$uid:$uid" --label "io.spokelink.kube.binary=$sum" "$ctr"
  buildah commit --quiet --rm "$ctr" "$image" >/dev/null
  if [ -n "$old" ]; then podman rmi "$old" >/dev/null 2>&1 || true; fi
  echo "$image: built ($name $sum)"
}

# prometheus_image: Debian's prometheus (the machine's package, 2.42) on the local Debian base image, run as
# nobody (65534); the scenario's spoke and hub Prometheus. Rebuilt only when the binary changes.
prometheus_image() {
  local image="$KUBE_IMAGES_PROMETHEUS" binary=/usr/bin/prometheus sum
  if [ ! -x "$binary" ]; then apt-get install -y -qq --no-install-recommends prometheus >/dev/null; fi
  sum="$(sha256sum <"$binary" | cut -c1-16)"
  if [ "$(podman image inspect --format '{{ index .Labels "io.spokelink.kube.binary" }}' "$image" 2>/dev/null || true)" = "$sum" ]; then
    echo "$image: cached (prometheus $sum)"
    return
  fi
  local old; old="$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
  local ctr; ctr="$(buildah from "$SPOKELINK_BASE_IMAGE")"
  buildah copy --quiet --chmod 0755 "$ctr" "$binary" /usr/bin/prometheus >/dev/null
  buildah config --entrypoint '["/usr/bin/prometheus"]' --cmd '' --user 65534:65534 --workingdir /tmp \
    --label "io.spokelink.kube.binary=$sum" "$ctr"
  buildah commit --quiet --rm "$ctr" "$image" >/dev/null
  if [ -n "$old" ]; then podman rmi "$old" >/dev/null 2>&1 || true; fi
  echo "$image: built ($("$binary" --version 2>&1 | head -n 1 | cut -d' ' -f1-3) $sum)"
}

case "${1:-}" in
  build)
    scratch_image "$KUBE_IMAGES_PAUSE" "$KUBE_TOOLS/bin/pause" 65535
    scratch_image "$KUBE_IMAGES_COREDNS" "$KUBE_TOOLS/bin/coredns" 65532
    bash "$repo/scripts/build-image"
    prometheus_image
    ;;
  import)
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    # The spokelink image also under the cli's version, the charts' default tag (scripts/build-image tags it).
    version="$(node -p "require('$repo/packages/cli/package.json').version")"
    for image in "$KUBE_IMAGES_PAUSE" "$KUBE_IMAGES_COREDNS" "$SPOKELINK_IMAGE" "${SPOKELINK_IMAGE%:*}:$version" \
      "$KUBE_IMAGES_PROMETHEUS"; do
      # docker-archive keeps the full name (localhost/…:tag) that pods refer to.
      podman save --quiet --format docker-archive -o "$tmp/image.tar" "$image"
      ctr images import "$tmp/image.tar" >/dev/null
      rm -f "$tmp/image.tar"
      echo "imported $image"
    done
    ctr images ls -q | grep -E '^localhost/' || true
    ;;
  *)
    echo "usage: images.sh build|import" >&2
    exit 2
    ;;
esac
