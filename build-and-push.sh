#!/usr/bin/env bash
# Build the Spool Interview image and push it to Amazon ECR (or to any registry: --registry).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: ./build-and-push.sh [options]

Build the Docker image of Spool Interview (./Dockerfile) and push it to Amazon ECR, or to
another registry with --registry. Every option can also come from the environment; options win.

Options:
  -a, --account ID       AWS account id                 (AWS_ACCOUNT_ID; default: the caller's,
                                                         from `aws sts get-caller-identity`)
  -r, --region REGION    AWS region                     (AWS_REGION, AWS_DEFAULT_REGION)
  -n, --repository NAME  ECR repository                 (ECR_REPOSITORY; default: spool-interview)
  -t, --tag TAG          image tag                      (IMAGE_TAG; default: the git commit,
                                                         with -dirty for uncommitted changes)
  -w, --whisper MODEL    Whisper model in the image     (WHISPER_MODEL; tiny.en or base)
      --platform P       target platform                (PLATFORM; default: linux/amd64, Fargate's)
  -b, --base IMAGE       base image of both stages      (BASE_IMAGE; default: the Dockerfile's,
                                                         python:3.11-slim-trixie; offline, the
                                                         stand-in: BASE_IMAGE=$(docker/standin-base.sh))
      --build-ca FILE    CA bundle the build stage trusts (BUILD_CA_FILE; a proxy that re-signs
                                                         TLS to PyPI and npm; not in the image)
      --registry HOST    push to HOST[:PORT] instead of ECR; no aws CLI needed (REGISTRY).
                         Logs in first when REGISTRY_USERNAME is set, with REGISTRY_PASSWORD
                         read from the environment (never from the command line)
      --create-repo      create the repository when it does not exist (scan on push)
      --no-push          build and tag only
  -h, --help             show this help

Examples:
  AWS_REGION=eu-west-1 ./build-and-push.sh --tag v1.2.0
  ./build-and-push.sh --registry registry.example.com:5000 --repository team/spool --tag v1.2.0
Then deploy the tag: cdk deploy SpoolEcsStack -c image_tag=<tag> (see cdk/README.md).
EOF
}

die() {
  echo "build-and-push: $*" >&2
  exit 1
}

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is required but not installed"
}

account="${AWS_ACCOUNT_ID:-}"
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
repository="${ECR_REPOSITORY:-spool-interview}"
tag="${IMAGE_TAG:-}"
whisper="${WHISPER_MODEL:-tiny.en}"
platform="${PLATFORM:-linux/amd64}"
base="${BASE_IMAGE:-}"
build_ca="${BUILD_CA_FILE:-}"
registry="${REGISTRY:-}"
create_repo=false
push=true

while [ $# -gt 0 ]; do
  case "$1" in
    -a | --account) [ $# -ge 2 ] || die "$1 needs a value"; account="$2"; shift 2 ;;
    -r | --region) [ $# -ge 2 ] || die "$1 needs a value"; region="$2"; shift 2 ;;
    -n | --repository) [ $# -ge 2 ] || die "$1 needs a value"; repository="$2"; shift 2 ;;
    -t | --tag) [ $# -ge 2 ] || die "$1 needs a value"; tag="$2"; shift 2 ;;
    -w | --whisper) [ $# -ge 2 ] || die "$1 needs a value"; whisper="$2"; shift 2 ;;
    --platform) [ $# -ge 2 ] || die "$1 needs a value"; platform="$2"; shift 2 ;;
    -b | --base) [ $# -ge 2 ] || die "$1 needs a value"; base="$2"; shift 2 ;;
    --build-ca) [ $# -ge 2 ] || die "$1 needs a value"; build_ca="$2"; shift 2 ;;
    --registry) [ $# -ge 2 ] || die "$1 needs a value"; registry="$2"; shift 2 ;;
    --create-repo) create_repo=true; shift ;;
    --no-push) push=false; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

# A CA bundle named relative to where the script was called from.
if [ -n "$build_ca" ]; then
  [ -r "$build_ca" ] || die "cannot read the CA bundle $build_ca"
  build_ca="$(realpath -- "$build_ca")"
fi
# Build from the repository root, wherever the script is called from.
cd "$(dirname "${BASH_SOURCE[0]}")"

case "$whisper" in
  tiny.en | base) ;;
  *) die "--whisper must be tiny.en or base, not '$whisper'" ;;
esac
if [ -z "$tag" ]; then
  tag="$(git rev-parse --short=12 HEAD 2>/dev/null || true)"
  [ -n "$tag" ] || die "no --tag given and this is not a git checkout"
  if [ -n "$(git status --porcelain 2>/dev/null)" ]; then
    tag="${tag}-dirty"
  fi
fi
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "'$tag' is not a valid image tag"
if [ -n "$registry" ]; then
  [[ "$registry" =~ ^[A-Za-z0-9.-]+(:[0-9]{1,5})?$ ]] || die "'$registry' is not a registry host[:port]"
fi
[[ "$repository" =~ ^[a-z0-9]+([._/-][a-z0-9]+)*$ ]] || die "'$repository' is not a valid repository name"
build_args=(--build-arg "WHISPER_MODEL=${whisper}")
[ -z "$base" ] || build_args+=(--build-arg "BASE_IMAGE=${base}")
if [ -n "$build_ca" ]; then
  # The Dockerfile's build stage picks it up from the context; gone again when the script ends.
  # One put there by hand is neither overwritten nor removed.
  [ ! -e docker/build-ca.crt ] || die "docker/build-ca.crt exists: remove it or drop --build-ca"
  cp "$build_ca" docker/build-ca.crt
  trap 'rm -f docker/build-ca.crt' EXIT
fi

need docker
local_image="${repository}:${tag}"
echo ">> building ${local_image} (${platform}, Whisper ${whisper})"
docker build \
  --platform "$platform" \
  "${build_args[@]}" \
  --tag "$local_image" \
  .

if [ "$push" = false ]; then
  echo ">> built ${local_image} (not pushed)"
  exit 0
fi

# Pushes and prints the pushed manifest's digest (IMAGE_DIGEST), as `docker push` reports it: the
# registry's name for exactly these bytes, what a task definition can pin.
push_image() {
  local remote_image="$1" output digest
  docker tag "$local_image" "$remote_image"
  echo ">> pushing ${remote_image}"
  output="$(docker push "$remote_image" | tee /dev/stderr)"
  digest="$(grep -Eo 'digest: sha256:[0-9a-f]{64}' <<<"$output" | tail -n1 | cut -d' ' -f2 || true)"
  [ -n "$digest" ] || die "docker push reported no digest for ${remote_image}"
  echo ">> pushed ${remote_image}"
  echo "IMAGE_URI=${remote_image}"
  echo "IMAGE_DIGEST=${digest}"
}

if [ -n "$registry" ]; then
  if [ -n "${REGISTRY_USERNAME:-}" ]; then
    echo ">> logging in to ${registry} as ${REGISTRY_USERNAME}"
    printf '%s' "${REGISTRY_PASSWORD:-}" \
      | docker login --username "$REGISTRY_USERNAME" --password-stdin "$registry"
  fi
  push_image "${registry}/${repository}:${tag}"
  exit 0
fi

need aws
[ -n "$region" ] || die "no region: pass --region or set AWS_REGION"
if [ -z "$account" ]; then
  account="$(aws sts get-caller-identity --query Account --output text)"
fi
[[ "$account" =~ ^[0-9]{12}$ ]] || die "'$account' is not a 12-digit AWS account id"

registry="${account}.dkr.ecr.${region}.amazonaws.com"
remote_image="${registry}/${repository}:${tag}"

if ! aws ecr describe-repositories --region "$region" --repository-names "$repository" \
  >/dev/null 2>&1; then
  [ "$create_repo" = true ] || die "ECR repository '$repository' not found in $region (use --create-repo)"
  echo ">> creating ECR repository ${repository}"
  aws ecr create-repository --region "$region" --repository-name "$repository" \
    --image-scanning-configuration scanOnPush=true >/dev/null
fi

echo ">> logging in to ${registry}"
aws ecr get-login-password --region "$region" \
  | docker login --username AWS --password-stdin "$registry"

push_image "$remote_image"
