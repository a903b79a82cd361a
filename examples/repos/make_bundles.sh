#!/bin/sh
# Rebuild examples/repos/<name>.bundle from examples/src/<name>/: one commit
# on `main`, tagged `v1.0` (a lightweight tag, so it names the commit itself).
# Author, committer, dates and config are fixed, and packing is single-threaded,
# so the same sources give the same commit ids (and, with the same git, the
# same bundle bytes).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src="$here/../src"
export GIT_AUTHOR_NAME="dvx examples" GIT_AUTHOR_EMAIL="examples@dvx.invalid"
export GIT_COMMITTER_NAME="dvx examples" GIT_COMMITTER_EMAIL="examples@dvx.invalid"
export GIT_AUTHOR_DATE="2024-01-01T00:00:00+0000" GIT_COMMITTER_DATE="2024-01-01T00:00:00+0000"
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
for dir in "$src"/*/; do
  name=$(basename "$dir")
  work=$(mktemp -d)
  cp -R "$dir". "$work/"
  find "$work" -name __pycache__ -prune -exec rm -rf {} +
  (
    cd "$work"
    git init -q -b main
    git add -A
    git commit -q -m "$name 1.0"
    git tag v1.0
    rm -f "$here/$name.bundle"
    git -c pack.threads=1 bundle create -q "$here/$name.bundle" main v1.0
  )
  echo "$name: $(git -C "$work" rev-parse HEAD)"
  rm -rf "$work"
done
