#!/usr/bin/env bash
# Headless-Chromium screenshot of RUN_DIR/report.html, and a check that the page logs no
# console errors and makes no network request.
#
#   scripts/screenshot_report.sh RUN_DIR OUT.png [WIDTH,HEIGHT]
#
# Needs Debian's `chromium` (apt-get install -y chromium). Exit status 1 when the page is
# missing, the screenshot fails, or the console shows an error.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 RUN_DIR OUT.png [WIDTH,HEIGHT]" >&2
  exit 2
fi
run_dir=$1
out=$2
size=${3:-1400,5000}
page="$(cd "$run_dir" && pwd)/report.html"
[[ -f $page ]] || { echo "error: no $page (run: reasonmaxxer report $run_dir)" >&2; exit 1; }
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[[ -n $browser ]] || { echo "error: chromium not found (apt-get install -y chromium)" >&2; exit 1; }

profile=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$profile" "$log"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-background-networking
  --disable-component-update --disable-sync --no-first-run --hide-scrollbars
  --user-data-dir="$profile" --enable-logging=stderr --v=0)

out_abs="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
"$browser" "${flags[@]}" --window-size="$size" --screenshot="$out_abs" "file://$page" \
  >/dev/null 2>"$log" || true
[[ -s $out_abs ]] || { cat "$log" >&2; echo "error: no screenshot written" >&2; exit 1; }

# The DOM after load: proves the page parses and lets us look for remote references.
dom=$("$browser" "${flags[@]}" --dump-dom "file://$page" 2>>"$log" || true)
status=0
if grep -E 'Uncaught|CONSOLE.*(error|Error)|:ERROR:.*console' "$log" >&2; then
  echo "error: console errors while loading the page" >&2
  status=1
fi
if grep -Eo '(src|href)="https?://[^"]*"' <<<"$dom" >&2; then
  echo "error: the page references the network" >&2
  status=1
fi
if ! grep -q '</main>' <<<"$dom"; then
  echo "error: --dump-dom did not return the page" >&2
  status=1
fi
echo "$out_abs"
exit $status
