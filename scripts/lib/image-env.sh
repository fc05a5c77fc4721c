# Sourced by scripts/build-image and scripts/test-image: the image's name and the podman/buildah settings.
# shellcheck shell=bash

# The image both scripts (and the Helm charts' values: repository + tag) refer to.
export SPOKELINK_IMAGE="${SPOKELINK_IMAGE:-localhost/spokelink:dev}"
# Our containers.conf (runc, cgroupfs, file events, ulimits) instead of the machine's /etc/containers one.
export CONTAINERS_CONF="${CONTAINERS_CONF:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/docker/containers.conf}"
# buildah's default OCI isolation fails on this machine's cgroup layout; chroot works.
export BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"

# shellcheck source=phase.sh
source "$(dirname "${BASH_SOURCE[0]}")/phase.sh"
