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
    forget_unpacked_packages()?;
    // `--workspace` would take the unpublished members too; the published ones, named,
    // are packaged together (each one's workspace dependencies from their packages).
    let mut package = cargo()?;
    package.args(["package", "--allow-dirty"]);
    for name in PUBLISHED {
        package.args(["-p", name]);
    }
    let code = exit_code(run(&mut package)?);
    if code != 0 {
        // The other way an earlier package of the same version comes back: its build in
        // this target directory, which cargo does not check against the sources of a
        // registry package.
        eprintln!(
            "xtask: if a package fails on a workspace crate's item that has since changed, \
             an earlier build of that package is still in target/: `cargo clean -p otp-core` \
             (or the crate named) and run again"
        );
    }
    Ok(code)
}

/// Deletes the sources of this workspace's packages that an earlier `cargo package`
/// unpacked from its temporary local registry (`$CARGO_HOME/registry/src/-<hash>/`).
/// Cargo unpacks a `.crate` only when its directory is missing, so a package of the same
/// version built after a change would otherwise verify its dependents against the old
/// sources, and fail on a signature that has since changed (seen: a second `cargo xtask
/// ci` on one machine, whose `CARGO_HOME` outlives the checkout).
fn forget_unpacked_packages() -> Result<(), String> {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry").join("src")) else {
        return Ok(());
    };
    let Ok(registries) = std::fs::read_dir(&src) else {
        return Ok(());
    };
    for registry in registries.flatten() {
        // Local registries are named `-<hash>`; crates.io's `index.crates.io-<hash>`.
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        let Ok(unpacked) = std::fs::read_dir(registry.path()) else {
            continue;
        };
        for dir in unpacked.flatten() {
            let name = dir.file_name().to_string_lossy().into_owned();
            if PUBLISHED.iter().any(|p| name.starts_with(&format!("{p}-"))) {
                std::fs::remove_dir_all(dir.path())
                    .map_err(|e| format!("removing {}: {e}", dir.path().display()))?;
            }
        }
    }
    Ok(())
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
