#!/usr/bin/env bash
# Checks clang-format (config: .clang-format at the repo root) on the C++/CUDA files
# (*.h *.cpp *.cu *.cuh) changed relative to a base revision; nothing is rewritten.
#   bash tools/check_format.sh           # base: merge-base with origin/main (when it is not
#                                        # HEAD itself), else HEAD~1
#   bash tools/check_format.sh BASE      # any revision (a commit, a branch, HEAD)
#   bash tools/check_format.sh --all     # every tracked file
# When the base does not resolve (a shallow clone, a first commit) every tracked file is checked.
# "Changed" means committed since the base plus what the working tree changes (untracked files
# that git does not ignore included). Exit 1 when a file would be reformatted; fix with
# `clang-format -i FILE`. CLANG_FORMAT picks the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
cf="${CLANG_FORMAT:-clang-format}"
if ! command -v "$cf" >/dev/null 2>&1; then
  echo "check_format: $cf not found (apt-get install clang-format)" >&2
  exit 2
fi
patterns=('*.h' '*.cpp' '*.cu' '*.cuh')

base="${1:-}"
if [ -z "$base" ]; then
  if git rev-parse --verify -q origin/main >/dev/null; then
    base="$(git merge-base HEAD origin/main 2>/dev/null || true)"
    # On main itself (or a branch with nothing new) the merge-base is HEAD: check the last commit.
    [ "$base" = "$(git rev-parse HEAD)" ] && base=""
  fi
  [ -z "$base" ] && base="$(git rev-parse --verify -q 'HEAD~1' 2>/dev/null || true)"
  [ -z "$base" ] && base="--all"
elif [ "$base" != "--all" ] && ! git rev-parse --verify -q "$base^{commit}" >/dev/null; then
  echo "check_format: base '$base' not found; checking every tracked file" >&2
  base="--all"
fi

if [ "$base" = "--all" ]; then
  mapfile -t files < <(git ls-files -- "${patterns[@]}")
  what="all tracked files"
else
  mapfile -t files < <({
    git diff --name-only --diff-filter=ACMR "$base" -- "${patterns[@]}"
    git ls-files --others --exclude-standard -- "${patterns[@]}"
  } | sort -u)
  what="files changed since $(git rev-parse --short "$base")"
fi

bad=()
for f in "${files[@]}"; do
  [ -f "$f" ] || continue
  if ! "$cf" --style=file --dry-run --Werror "$f" >/dev/null 2>&1; then bad+=("$f"); fi
done
if [ "${#bad[@]}" -gt 0 ]; then
  echo "check_format: ${#bad[@]} of ${#files[@]} $what need clang-format:" >&2
  for f in "${bad[@]}"; do
    n=$("$cf" --style=file "$f" | diff "$f" - | grep -c '^<' || true)
    echo "  $f ($n lines differ; fix: $cf -i $f)" >&2
  done
  exit 1
fi
echo "check_format: ${#files[@]} $what are clang-formatted"
