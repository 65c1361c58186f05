//! `cargo xtask package`: what each published crate ships. Lists every crate's package
//! (`cargo package --list`), fails on a file a user does not need (test keys, fixtures,
//! tests, screenshots) or a missing README or licence, then builds the packages as
//! crates.io would (`cargo package -p …` for every published crate: each one from its
//! packaged files alone, its workspace dependencies from their packages).

use crate::Outcome;
use crate::cmd::{cargo, output, run};

/// The crates published to crates.io, in dependency order.
const PUBLISHED: [&str; 6] = [
    "otp-core",
    "otp-redis",
    "otp-fred",
    "otp-smtp",
    "otp-axum",
    "otp-poem",
];

/// Files every package must hold.
const REQUIRED: [&str; 4] = ["Cargo.toml", "README.md", "LICENSE-MIT", "LICENSE-APACHE"];

/// The problems of one package's file list: files other than the sources, the README, the
/// licences and what cargo writes itself; a missing README or licence.
fn list_problems(crate_name: &str, listing: &str) -> Vec<String> {
    let files: Vec<&str> = listing.split_whitespace().collect();
    let generated = [".cargo_vcs_info.json", "Cargo.toml.orig", "Cargo.lock"];
    let source =
        |f: &str| f.starts_with("src/") && [".rs", ".lua", ".html"].iter().any(|e| f.ends_with(e));
    let allowed = |f: &&&str| REQUIRED.contains(f) || generated.contains(f) || source(f);
    let unwanted = files.iter().filter(|f| !allowed(f));
    let unwanted = unwanted.map(|f| format!("{crate_name} would ship {f}"));
    let missing = REQUIRED.iter().filter(|r| !files.contains(r));
    let missing = missing.map(|r| format!("{crate_name} would ship without {r}"));
    unwanted.chain(missing).collect()
}

/// Checks every published crate's file list, then packages and verifies them all.
pub(crate) fn check() -> Outcome {
    let mut problems = Vec::new();
    for name in PUBLISHED {
        let list = format!("package --list --allow-dirty -p {name}");
        let listing = output(&mut cargo(&list))?;
        let found = list_problems(name, &listing);
        eprintln!("xtask: {name} ships {} files", listing.lines().count());
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
    let package = format!("package --allow-dirty -p {}", PUBLISHED.join(" -p "));
    let code = run(&mut cargo(&package))?;
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
    let Some(Ok(registries)) = home.map(|h| std::fs::read_dir(h.join("registry/src"))) else {
        return Ok(());
    };
    // Local registries are named `-<hash>`; crates.io's `index.crates.io-<hash>`.
    let local = registries
        .flatten()
        .filter(|r| r.file_name().to_string_lossy().starts_with('-'));
    let unpacked = local
        .filter_map(|r| std::fs::read_dir(r.path()).ok())
        .flatten()
        .flatten();
    for dir in unpacked {
        let name = dir.file_name().to_string_lossy().into_owned();
        if PUBLISHED.iter().any(|p| name.starts_with(&format!("{p}-"))) {
            std::fs::remove_dir_all(dir.path())
                .map_err(|e| format!("removing {}: {e}", dir.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::list_problems;

    #[test]
    fn sources_readme_and_licences_pass_and_nothing_else() {
        let good = "Cargo.toml\nCargo.toml.orig\n.cargo_vcs_info.json\nCargo.lock\nREADME.md\n\
                    LICENSE-MIT\nLICENSE-APACHE\nsrc/lib.rs\nsrc/lua/verify_fn.lua\nsrc/docs.html\n";
        assert!(list_problems("c", good).is_empty());
        let bad = format!("{good}testdata/keys/rsa-a.pem\ntests/oneshot.rs\n");
        let expected = [
            "c would ship testdata/keys/rsa-a.pem",
            "c would ship tests/oneshot.rs",
        ];
        assert_eq!(list_problems("c", &bad), expected);
        let missing = list_problems("c", "Cargo.toml\nsrc/lib.rs\n");
        assert_eq!(
            missing.join("; "),
            "c would ship without README.md; c would ship without \
                   LICENSE-MIT; c would ship without LICENSE-APACHE"
        );
    }
}
