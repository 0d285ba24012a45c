#!/bin/sh
# Writes DEMO-ONLY TLS files for agent→hub gRPC into DIR: a throw-away CA
# (ca.pem, ca-key.pem) and a hub server certificate it signs (server.pem,
# server-key.pem) for the given names; each NAME is a DNS name or an IP
# address. Existing files are kept, so rerunning is harmless; delete DIR to
# start over. Needs openssl (1.1.1 or later).
#
#   deploy/compose/gen-certs.sh deploy/compose/certs hub-1 hub-2 hub-3 localhost 127.0.0.1
#
# Give agents ca.pem (hub.tls.ca_file) and the hubs server.pem and
# server-key.pem (tls.cert_file, tls.key_file). In production use your own
# CA; these keys are unencrypted and the CA key sits next to them.
#
# OWNER=uid:gid (optional) chowns the server key, for a hub running as that
# user; the compose `certs` service sets it for the image's user.
set -eu

if [ $# -lt 2 ]; then
	echo "usage: $0 DIR NAME..." >&2
	exit 2
fi
dir=$1
shift
days=${DAYS:-365}

mkdir -p "$dir"
cd "$dir"
if [ -s ca.pem ] && [ -s server.pem ] && [ -s server-key.pem ]; then
	echo "gen-certs: $dir already holds ca.pem, server.pem and server-key.pem; keeping them"
	exit 0
fi

san=""
for name in "$@"; do
	case $name in
	*[!0-9.]* ) case $name in *:*) kind=IP ;; *) kind=DNS ;; esac ;;
	*) kind=IP ;;
	esac
	san="${san:+$san,}$kind:$name"
done

umask 077
openssl ecparam -name prime256v1 -genkey -noout -out ca-key.pem
openssl req -x509 -new -key ca-key.pem -sha256 -days "$days" \
	-subj "/CN=bureauhub demo CA (not for production)" \
	-addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" \
	-out ca.pem
openssl ecparam -name prime256v1 -genkey -noout -out server-key.pem
openssl req -new -key server-key.pem -subj "/CN=bureauhub hub" -out server.csr
cat >server.ext <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$san
EOF
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
	-days "$days" -sha256 -extfile server.ext -out server.pem
rm -f server.csr server.ext ca.srl
chmod 0644 ca.pem server.pem
chmod 0600 ca-key.pem server-key.pem
if [ -n "${OWNER:-}" ]; then
	chown "$OWNER" server-key.pem
fi
echo "gen-certs: wrote $dir/ca.pem, server.pem, server-key.pem for $san"
