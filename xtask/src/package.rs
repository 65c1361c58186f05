//! `cargo xtask package`: what each published crate ships. Lists every crate's package
//! (`cargo package --list`), fails on a file a user does not need (test keys, fixtures,
//! tests, screenshots) or a missing README or licence, then builds the packages as
//! crates.io would (`cargo package -p …` for every published crate: each one from its
//! packaged files alone, its workspace dependencies from their packages).

use crate::Outcome;
use crate::cmd::{self, cargo, exit_code, run};

/// The crates published to crates.io, in dependency order.
pub(crate) const PUBLISHED: [&str; 6] = [
    "otp-core",
    "otp-redis",
    "otp-fred",
    "otp-smtp",
    "otp-axum",
    "otp-poem",
];

/// Files every package must hold.
const REQUIRED: [&str; 4] = ["Cargo.toml", "README.md", "LICENSE-MIT", "LICENSE-APACHE"];

/// Files cargo adds to every package.
const GENERATED: [&str; 3] = [".cargo_vcs_info.json", "Cargo.toml.orig", "Cargo.lock"];

/// Whether `path` (relative to the package root) may ship: the sources, the README, the
/// licences and what cargo writes itself.
fn allowed(path: &str) -> bool {
    REQUIRED.contains(&path)
        || GENERATED.contains(&path)
        || (path.starts_with("src/")
            && [".rs", ".lua", ".html"]
                .iter()
                .any(|ext| path.ends_with(ext)))
}

/// The problems of one package's file list.
pub(crate) fn list_problems(crate_name: &str, listing: &str) -> Vec<String> {
    let files: Vec<&str> = listing
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut problems: Vec<String> = files
        .iter()
        .filter(|f| !allowed(f))
        .map(|f| format!("{crate_name} would ship {f}"))
        .collect();
    for required in REQUIRED {
        if !files.contains(&required) {
            problems.push(format!("{crate_name} would ship without {required}"));
        }
    }
    problems
}

/// Checks every published crate's file list, then packages and verifies them all.
pub(crate) fn check() -> Outcome {
    let mut problems = Vec::new();
    for name in PUBLISHED {
        let mut list = cargo()?;
        list.args(["package", "--list", "--allow-dirty", "-p", name]);
        let out = list
            .output()
            .map_err(|e| format!("running `{}`: {e}", cmd::display(&list)))?;
        if !out.status.success() {
            return Err(format!(
                "`{}` failed: {}",
                cmd::display(&list),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let listing = String::from_utf8_lossy(&out.stdout);
        let found = list_problems(name, &listing);
        eprintln!(
            "xtask: {name} ships {} files{}",
            listing.lines().count(),
            if found.is_empty() {
                ""
            } else {
                ", not all of them wanted"
            }
        );
        problems.extend(found);
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("xtask: {p}");
        }
        return Ok(1);
    }
    // `--workspace` would take the unpublished members too; the published ones, named,
    // are packaged together (each one's workspace dependencies from their packages).
    let mut package = cargo()?;
    package.args(["package", "--allow-dirty"]);
    for name in PUBLISHED {
        package.args(["-p", name]);
    }
    Ok(exit_code(run(&mut package)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_readme_and_licences_pass_and_nothing_else() {
        let good = "Cargo.toml\nCargo.toml.orig\n.cargo_vcs_info.json\nCargo.lock\nREADME.md\n\
                    LICENSE-MIT\nLICENSE-APACHE\nsrc/lib.rs\nsrc/lua/verify_fn.lua\nsrc/docs.html\n";
        assert!(list_problems("c", good).is_empty());
        let bad = format!("{good}testdata/keys/rsa-a.pem\ntests/oneshot.rs\ndocs/login-page.png\n");
        assert_eq!(
            list_problems("c", &bad),
            [
                "c would ship testdata/keys/rsa-a.pem",
                "c would ship tests/oneshot.rs",
                "c would ship docs/login-page.png"
            ]
        );
        let missing = "Cargo.toml\nsrc/lib.rs\n";
        assert_eq!(
            list_problems("c", missing),
            [
                "c would ship without README.md",
                "c would ship without LICENSE-MIT",
                "c would ship without LICENSE-APACHE"
            ]
        );
    }
}
