#!/usr/bin/env bash
# Makes sure PostgreSQL and MariaDB answer on 127.0.0.1 for the storage and
# interop tests, installing and starting them on a fresh Debian machine, and
# prints the `export` lines the tests read:
#
#     eval "$(bash tests/services.sh)"
#
# Where the services already accept passwordless logins (postgres / root
# over TCP) nothing is changed. Otherwise a `keyway` test user is created.
set -euo pipefail
log() { echo "services: $*" >&2; }
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
apt_install() {
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >&2
}
wait_for() { # command... ; up to 30 s
    for _ in $(seq 1 60); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
    return 1
}

# PostgreSQL
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
if ! command -v pg_isready >/dev/null || ! pg_up; then
    command -v pg_ctlcluster >/dev/null || { log "installing PostgreSQL"; apt_install postgresql; }
    for v in /etc/postgresql/*; do
        $sudo pg_ctlcluster --skip-systemctl-redirect "$(basename "$v")" main start >&2 || true
    done
    wait_for pg_up || { log "PostgreSQL does not start"; exit 1; }
fi
pg_url="postgres://postgres@127.0.0.1:5432"
if ! psql "$pg_url/postgres" -qtAc 'SELECT 1' >/dev/null 2>&1; then
    log "creating PostgreSQL role keyway"
    $sudo -u postgres psql -qc "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='keyway')
        THEN CREATE ROLE keyway LOGIN CREATEDB PASSWORD 'keyway'; END IF; END\$\$;" >&2
    pg_url="postgres://keyway:keyway@127.0.0.1:5432"
fi

# MariaDB
my() { mariadb --protocol=tcp -h 127.0.0.1 -P 3306 "$@"; }
my_up() { my -uroot -e 'SELECT 1' || my -ukeyway -pkeyway -e 'SELECT 1'; }
if ! command -v mariadb >/dev/null || ! my_up >/dev/null 2>&1; then
    [ -x /usr/sbin/mariadbd ] || { log "installing MariaDB"; apt_install mariadb-server mariadb-client; }
    $sudo start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd >&2 || true
    wait_for $sudo mariadb -uroot -e 'SELECT 1' || { log "MariaDB does not start"; exit 1; }
fi
my_url="mysql://root@127.0.0.1:3306"; my_user=root; my_pw=""
if ! my -uroot -e 'SELECT 1' >/dev/null 2>&1; then
    log "creating MariaDB user keyway"
    $sudo mariadb -uroot -e "
        CREATE USER IF NOT EXISTS 'keyway'@'127.0.0.1' IDENTIFIED BY 'keyway';
        CREATE USER IF NOT EXISTS 'keyway'@'localhost' IDENTIFIED BY 'keyway';
        GRANT ALL PRIVILEGES ON *.* TO 'keyway'@'127.0.0.1';
        GRANT ALL PRIVILEGES ON *.* TO 'keyway'@'localhost';" >&2
    my_url="mysql://keyway:keyway@127.0.0.1:3306"; my_user=keyway; my_pw=keyway
fi

echo "export KEYWAY_TEST_POSTGRES='$pg_url'"
echo "export KEYWAY_TEST_MYSQL='$my_url'"
echo "export NB_DB_USER='$my_user' NB_DB_PW='$my_pw'"
