#!/usr/bin/env bash
# Fetches the portal's vendored front-end packages from the npm registry,
# pinned by version and checked against the registry's integrity sums,
# into static/vendor/. The files are committed: the portal runs with no
# build step and nothing fetched at run time. Run this only to change a
# version (then update the sums below from `npm view PKG@VER dist.integrity`).
set -euo pipefail
cd "$(dirname "$0")"
out=static/vendor/xterm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() { # name version integrity
	local tgz
	tgz=$(cd "$work" && npm pack --silent "$1@$2")
	local got
	got="sha512-$(openssl dgst -sha512 -binary "$work/$tgz" | base64 -w0)"
	if [ "$got" != "$3" ]; then
		echo "$1@$2: integrity $got, want $3" >&2
		exit 1
	fi
	mkdir -p "$work/$1"
	tar xzf "$work/$tgz" -C "$work/$1"
}

fetch @xterm/xterm 6.0.0 sha512-TQwDdQGtwwDt+2cgKDLn0IRaSxYu1tSUjgKarSDkUM0ZNiSRXFpjxEsvc/Zgc5kq5omJ+V0a8/kIM2WD3sMOYg==
fetch @xterm/addon-fit 0.11.0 sha512-jYcgT6xtVYhnhgxh3QgYDnnNMYTcf8ElbxxFzX0IZo+vabQqSPAjC3c1wJrKB5E19VwQei89QCiZZP86DCPF7g==

mkdir -p "$out"
cp "$work/@xterm/xterm/package/lib/xterm.js" "$work/@xterm/xterm/package/css/xterm.css" "$out/"
cp "$work/@xterm/xterm/package/LICENSE" "$out/LICENSE"
cp "$work/@xterm/addon-fit/package/lib/addon-fit.js" "$out/"
cmp -s "$work/@xterm/xterm/package/LICENSE" "$work/@xterm/addon-fit/package/LICENSE" || cp "$work/@xterm/addon-fit/package/LICENSE" "$out/LICENSE.addon-fit"
# The bundles end with a sourceMappingURL comment naming a map we do not
# ship; browsers would ask for it (and log a 404) when devtools are open.
sed -i '/^\/\/# sourceMappingURL=/d' "$out/xterm.js" "$out/addon-fit.js"
(cd "$out" && sha256sum xterm.js xterm.css addon-fit.js > SHA256SUMS)
echo "vendored into $out:"
cat "$out/SHA256SUMS"
