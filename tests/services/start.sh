#!/usr/bin/env bash
# Installs (when missing) and starts the servers the ignored tests need, on loopback, and prints the
# environment that points the tests at them. Usage, from the repository root:
#
#     eval "$(bash tests/services/start.sh)"
#     cargo test --workspace -- --include-ignored
#
# PostgreSQL: Debian's server package, a throwaway cluster in a temporary directory, port 55432,
# with TLS (a certificate for localhost from a throwaway CA, CLIENTELE_TEST_PG_CA).
# S3: s3s-fs 0.14.1 (an S3-compatible server over a directory), port 8014, installed with cargo into
# $TOOLS (default: the cargo target directory's tools/, so CI reuses it).
# Everything it starts is stopped by tests/services/stop.sh (or when the machine goes away).
set -euo pipefail
log() { echo "services: $*" >&2; }

target="${CARGO_TARGET_DIR:-$(pwd)/target}"
tools="${TOOLS:-$target/tools}"
state="${SERVICES_DIR:-/tmp/clientele-services}"
mkdir -p "$state"

# --- PostgreSQL ---------------------------------------------------------------------------------
pg_port=55432
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
  log "installing PostgreSQL from Debian's packages"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
run_as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
pg_data="$state/pg"
pg_tls="$state/pg-tls"
if ! "$pg_bin/pg_isready" -q -h 127.0.0.1 -p $pg_port 2>/dev/null; then
  rm -rf "$pg_data" "$pg_tls"; mkdir -p "$pg_data" "$pg_tls"
  # TLS: a throwaway CA, and a server certificate for the name localhost (not for 127.0.0.1, so
  # that the tests see verify-full refuse a name the certificate does not hold).
  (
    cd "$pg_tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3 -subj "/CN=clientele test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' > server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3 \
      -extfile server.ext -out server.crt 2>/dev/null
    chmod 600 server.key
  )
  [ "$(id -u)" = 0 ] && chown postgres "$state" "$pg_data" && chown -R postgres "$pg_tls"
  run_as_pg "'$pg_bin/initdb' -D '$pg_data' -A trust -U postgres >/dev/null"
  run_as_pg "'$pg_bin/pg_ctl' -D '$pg_data' -l '$pg_data/server.log' -w \
    -o '-p $pg_port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c ssl=on \
        -c ssl_cert_file=$pg_tls/server.crt -c ssl_key_file=$pg_tls/server.key' start >/dev/null"
  log "PostgreSQL started on 127.0.0.1:$pg_port (TLS with a test CA)"
fi

# --- S3 (s3s-fs) --------------------------------------------------------------------------------
s3_port=8014
if [ ! -x "$tools/bin/s3s-fs" ]; then
  log "installing s3s-fs 0.14.1 into $tools (a few minutes, once)"
  cargo install --quiet s3s-fs --version 0.14.1 --features binary --root "$tools" >&2
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/$s3_port) 2>/dev/null; then
  rm -rf "$state/s3"; mkdir -p "$state/s3"
  nohup "$tools/bin/s3s-fs" --host 127.0.0.1 --port $s3_port \
    --access-key clientele --secret-key clientele-secret "$state/s3" \
    >"$state/s3s-fs.log" 2>&1 &
  echo $! >"$state/s3s-fs.pid"
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$s3_port) 2>/dev/null && break; sleep 0.1; done
  log "s3s-fs started on 127.0.0.1:$s3_port"
fi

cat <<ENV
export CLIENTELE_TEST_PG_URL='postgres://postgres@127.0.0.1:$pg_port/postgres?sslmode=disable'
export CLIENTELE_TEST_PG_CA='$pg_tls/ca.crt'
export CLIENTELE_TEST_S3_ENDPOINT='http://127.0.0.1:$s3_port'
export CLIENTELE_TEST_S3_ROOT='$state/s3'
export AWS_ENDPOINT='http://127.0.0.1:$s3_port'
export AWS_ALLOW_HTTP=true
export AWS_ACCESS_KEY_ID=clientele
export AWS_SECRET_ACCESS_KEY=clientele-secret
export AWS_REGION=us-east-1
ENV
