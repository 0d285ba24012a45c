# Shared by the bench/*.sh scripts; source it after cd to the repository.
# log says who speaks; have finds a command on PATH or in /usr/sbin,
# /usr/bin; apt_install installs Debian packages when root, running
# apt-get update once if the first try fails.

log() { echo "bench/$(basename "$0"): $*" >&2; }

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

apt_updated=0
apt_install() {
	if [ "$(id -u)" != 0 ]; then
		log "cannot install $*: not root (run as root or install them yourself)"
		return 1
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		log "cannot install $*: no apt-get on this machine"
		return 1
	fi
	if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2; then
		return 0
	fi
	if [ "$apt_updated" = 0 ]; then
		apt_updated=1
		log "apt-get install failed; running apt-get update and trying again"
		apt-get update -qq >&2 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 && return 0
	fi
	log "apt-get install $* failed"
	return 1
}
