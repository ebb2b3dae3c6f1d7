#!/usr/bin/env bash
# Builds the book (docs/) into docs/book with mdBook from the crate registry,
# pinned (no Debian package has it); installs that version first when the
# `mdbook` on the PATH is another or missing (about 75 s on 2 cores, without
# the `serve` and `watch` features). Broken links between pages are caught
# by `cargo test -p latchkey --test book`.
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.4.52
export PATH="$HOME/.cargo/bin:$PATH"
if [ "$(mdbook --version 2>/dev/null)" != "mdbook v$version" ]; then
  cargo install mdbook --locked --version "$version" --no-default-features --features search
fi
mdbook build docs
