# Sourced by scripts/test and scripts/demo: make or reuse .venv with the package and test extras.
# Re-installs only when pyproject.toml changed (a stamp in .venv records its hash).
ensure_venv() {
    local root stamp want
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ]; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
                || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
        fi
    fi
    [ -x "$root/.venv/bin/python" ] || python3 -m venv "$root/.venv"
    stamp="$root/.venv/.pyl2tp-installed"
    want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        "$root/.venv/bin/python" -m pip install -q --upgrade pip >/dev/null
        "$root/.venv/bin/python" -m pip install -q -e "$root[test]"
        echo "$want" > "$stamp"
    fi
}
