# Developer recipes; `test`, `servers` and `ci` are thin wrappers over `cargo xtask`.

# Recipe arguments reach the commands as "$@", quoting intact.
set positional-arguments := true

# List the recipes
default:
    @just --list

# Run the example axum app
run *args:
    cargo run -p axum-example -- "$@"

# Every test against Redis, a Redis Cluster and an SMTP sink started for the run (args go to the test runner)
test *args:
    cargo xtask test "$@"

# Start the test servers and print their `export` lines; Ctrl-C stops them
servers:
    cargo xtask servers

# What CI runs: fmt check, clippy, rustdoc, the lean build, the packages, the tests (fuzz inputs replayed), Schemathesis
ci:
    cargo xtask ci

# Licences, banned crates and sources of the dependency tree (deny.toml)
deny:
    cargo xtask deny

# Schemathesis (PyPI, pinned, in a venv under target/) against both examples, every check, signed in
schemathesis:
    cargo xtask schemathesis

# What each published crate ships, then `cargo package` of them all
package:
    cargo xtask package

# Format every crate
fmt:
    cargo fmt --all

# Clippy with warnings denied, as in CI
clippy:
    cargo clippy --workspace --all-targets --all-features -- -D warnings

# Build the docs with warnings denied, as in CI
doc:
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features

# Each fuzz target for SECONDS (default 300)
fuzz seconds="300":
    cargo xtask fuzz {{seconds}}

# The benchmark: every app and store against the ceiling (args: --seconds N --concurrency N)
bench *args:
    cargo xtask bench "$@"

# The login flow at a steady rate for a long time (args: --minutes N --rate R)
soak *args:
    cargo xtask soak "$@"
