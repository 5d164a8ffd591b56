#!/bin/sh
# Starts coturn with the shared secret read from a file, never passed on its command line
# (docker-compose.turn.yml runs this as the container's entrypoint).
#
# coturn takes static-auth-secret from its command line or its config file only. On the command
# line it shows in `ps` on the host and in `docker inspect`; so this script copies the mounted
# config and appends the secret (the compose secret turn_secret, made from TURN_SECRET on the
# host) into a file on a tmpfs (memory only, gone when the container stops), readable by coturn's
# user alone, and execs coturn on that file. printf is a shell builtin: the secret is in no
# process's arguments. The arguments of this script (--realm, --external-ip) go to turnserver.
#
# The paths are the compose file's mounts; tests/turn/ moves them to a temporary directory.
set -eu

config=${COTURN_CONFIG:-/etc/coturn/turnserver.conf}
secret_file=${COTURN_SECRET_FILE:-/run/secrets/turn_secret}
run_dir=${COTURN_RUN_DIR:-/run/coturn}

fail() {
  echo "coturn-entrypoint: $*" >&2
  exit 1
}

[ -r "$config" ] || fail "cannot read the coturn config $config"
[ -r "$secret_file" ] || fail "cannot read the secret $secret_file: set TURN_SECRET for compose"
# $(...) drops the trailing newline an editor or `echo` leaves.
secret=$(cat "$secret_file")
[ -n "$secret" ] || fail "the secret in $secret_file is empty: set TURN_SECRET for compose"
case $secret in
  *"
"*) fail "the secret in $secret_file must be one line" ;;
  # coturn's config parser trims spaces and reads quotes and '#' its own way: such a secret
  # would silently differ from the service's copy, and every TURN login would get a 401.
  *[!A-Za-z0-9._~+/=-]*)
    fail "the secret in $secret_file may use only letters, digits and ._~+/=- (e.g. openssl rand -hex 32)" ;;
esac
if grep -Eq '^[[:space:]]*-{0,2}static-auth-secret' "$config"; then
  fail "$config must not set static-auth-secret: it comes from $secret_file"
fi

umask 077
rendered="$run_dir/turnserver.conf"
rm -f "$rendered"
{
  cat "$config"
  printf '\n# Appended by coturn-entrypoint.sh from %s.\n' "$secret_file"
  printf 'static-auth-secret=%s\n' "$secret"
} >"$rendered"
chmod 0600 "$rendered"
unset secret

exec turnserver -c "$rendered" "$@"
