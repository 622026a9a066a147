#!/usr/bin/env bash
# Build a signed APT repository holding a stand-in `grafana` package, for the role's air-gapped path
# (grafana_apt_mirror_url + grafana_apt_key_file) on hosts that cannot reach apt.grafana.com.
#
#   build-mirror.sh OUTDIR [VERSION]   -> OUTDIR/repo (a file:// mirror), OUTDIR/key.asc (its signing key)
#
# The stand-in has the real package's layout where the role touches it: /etc/grafana/grafana.ini (a
# conffile, root:grafana 0640, options commented out as shipped), /etc/grafana/provisioning/, the grafana
# user and group, /var/lib/grafana, and grafana-server.service. Its "server" is a few lines of Python that
# read http_addr/http_port from grafana.ini and answer GET /api/health, and list the provisioning files
# they found at GET /api/stand-in, so a test sees what the service read after the role restarted it.
set -euo pipefail

out="$(realpath -m "$1")"
version="${2:-11.6.1}"
work="$out/build"
rm -rf "$out"
mkdir -p "$work/pkg/DEBIAN" "$out/repo/pool/main" "$out/repo/dists/stable/main/binary-amd64" \
  "$out/repo/dists/stable/main/binary-arm64"
pkg="$work/pkg"

mkdir -p "$pkg/etc/grafana/provisioning/"{dashboards,datasources,plugins,alerting} \
  "$pkg/usr/share/grafana/bin" "$pkg/lib/systemd/system"
cat >"$pkg/etc/grafana/grafana.ini" <<'EOF'
##################### Grafana Configuration Example #####################
# (stand-in for the package's file: the same sections, options commented out as shipped)
;app_mode = production
;instance_name = ${HOSTNAME}

#################################### Paths ####################################
[paths]
;data = /var/lib/grafana
;logs = /var/log/grafana
;plugins = /var/lib/grafana/plugins
;provisioning = conf/provisioning

#################################### Server ####################################
[server]
;protocol = http
;http_addr =
;http_port = 3000
;domain = localhost
;root_url = %(protocol)s://%(domain)s:%(http_port)s/

#################################### Security ####################################
[security]
;admin_user = admin
;admin_password = admin
;secret_key = SW2YcwTIb9zpOOhoPsMm

#################################### Analytics ####################################
[analytics]
;reporting_enabled = true
;check_for_updates = true
;check_for_plugin_updates = true

#################################### Users ###############################
[users]
;allow_sign_up = true
EOF
cat >"$pkg/usr/share/grafana/bin/grafana" <<'EOF'
#!/usr/bin/python3
"""Stand-in for `grafana server`: answers /api/health on the address grafana.ini configures."""
import configparser
import http.server
import json
import os
import sys

config = configparser.ConfigParser(interpolation=None)
with open(sys.argv[-1].split("=", 1)[-1], encoding="utf-8") as handle:  # --config=PATH
    config.read_string("[top]\n" + handle.read())
server = config["server"] if config.has_section("server") else {}
provisioning = config.get("paths", "provisioning", fallback="/etc/grafana/provisioning")
address = (server.get("http_addr", "") or "0.0.0.0", int(server.get("http_port", "3000")))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/api/health":
            body = {"database": "ok", "version": os.environ.get("STAND_IN_VERSION", "")}
        elif self.path == "/api/stand-in":
            files = sorted(os.path.join(d, f) for d, _, names in os.walk(provisioning) for f in names)
            body = {"config": {s: dict(config[s]) for s in config.sections() if s != "top"}, "provisioning": files}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


http.server.ThreadingHTTPServer(address, Handler).serve_forever()
EOF
chmod 0755 "$pkg/usr/share/grafana/bin/grafana"
cat >"$pkg/lib/systemd/system/grafana-server.service" <<EOF
[Unit]
Description=Grafana instance (stand-in)
After=network-online.target

[Service]
User=grafana
Group=grafana
Environment=STAND_IN_VERSION=$version
ExecStart=/usr/share/grafana/bin/grafana server --config=/etc/grafana/grafana.ini
Restart=on-failure

[Install]
WantedBy=multi-user.target
EOF
cat >"$pkg/DEBIAN/control" <<EOF
Package: grafana
Version: $version
Architecture: all
Maintainer: modelfleet tests <tests@modelfleet.invalid>
Depends: python3
Section: default
Priority: optional
Description: Stand-in for Grafana in the modelfleet role tests
 Same paths, user and service name as Grafana's package; serves only /api/health.
EOF
echo /etc/grafana/grafana.ini >"$pkg/DEBIAN/conffiles"
cat >"$pkg/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  getent group grafana >/dev/null || groupadd --system grafana
  getent passwd grafana >/dev/null || useradd --system --gid grafana --home-dir /usr/share/grafana \
    --shell /usr/sbin/nologin grafana
  mkdir -p /var/lib/grafana /var/log/grafana
  chown grafana:grafana /var/lib/grafana /var/log/grafana
  chown root:grafana /etc/grafana /etc/grafana/grafana.ini
  chmod 0640 /etc/grafana/grafana.ini
  # Like Grafana's package on Debian: installed, not started.
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
EOF
chmod 0755 "$pkg/DEBIAN/postinst"
dpkg-deb --root-owner-group --build "$pkg" "$out/repo/pool/main/grafana_${version}_all.deb" >/dev/null

cd "$out/repo"
dpkg-scanpackages --multiversion pool /dev/null 2>/dev/null >dists/stable/main/binary-amd64/Packages
cp dists/stable/main/binary-amd64/Packages dists/stable/main/binary-arm64/Packages
gzip -9nk dists/stable/main/binary-amd64/Packages dists/stable/main/binary-arm64/Packages
{
  echo "Origin: modelfleet-tests"
  echo "Label: grafana stand-in"
  echo "Suite: stable"
  echo "Codename: stable"
  echo "Date: $(LC_ALL=C date -Ru)"
  echo "Architectures: amd64 arm64"
  echo "Components: main"
  echo "SHA256:"
  for f in main/binary-amd64/Packages main/binary-amd64/Packages.gz main/binary-arm64/Packages \
           main/binary-arm64/Packages.gz; do
    printf ' %s %s %s\n' "$(sha256sum "dists/stable/$f" | cut -d' ' -f1)" "$(stat -c %s "dists/stable/$f")" "$f"
  done
} >dists/stable/Release

export GNUPGHOME="$work/gnupg"
mkdir -m 0700 "$GNUPGHOME"
gpg --batch --quiet --passphrase '' --quick-gen-key 'modelfleet tests <tests@modelfleet.invalid>' ed25519 sign never
gpg --batch --quiet --armor --export >"$out/key.asc"
gpg --batch --quiet --yes --clearsign -o dists/stable/InRelease dists/stable/Release
gpg --batch --quiet --yes --armor --detach-sign -o dists/stable/Release.gpg dists/stable/Release
gpgconf --kill gpg-agent >/dev/null 2>&1 || true
rm -rf "$work"
chmod -R a+rX "$out"
echo "$out/repo"
