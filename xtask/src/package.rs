//! `cargo xtask package`: what each published crate ships. Lists every crate's package
//! (`cargo package --list`), fails on a file a user does not need (test keys, fixtures,
//! tests, screenshots) or a missing README or licence, then packages them all and checks
//! that each compiles from its packaged files alone, its workspace dependencies from their
//! packages.

use std::process::Command;

use crate::Outcome;
use crate::cmd::{cargo, output, run, target_dir};

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

/// Checks every published crate's file list, then packages them all and checks that the
/// packages compile from their files alone.
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
    // `--workspace` would take the unpublished members too.
    let package = format!(
        "package --no-verify --allow-dirty -p {}",
        PUBLISHED.join(" -p ")
    );
    let code = run(&mut cargo(&package))?;
    if code != 0 {
        return Ok(code);
    }
    verify_unpacked()
}

/// What `cargo package` would verify, for the price of a check: the `.crate` files unpacked
/// into a workspace of their own (`target/package-check`), each workspace dependency
/// patched to its package, checked with every feature (missing files, a manifest that
/// names what is not shipped, a dependency on an unpublished crate). Cargo's own
/// verification builds each package in full with its own feature set, six builds of the
/// dependency tree; this one shares the target directory with the rest of the run.
fn verify_unpacked() -> Outcome {
    let target = target_dir();
    let dir = target.join("package-check");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("clearing {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let version = env!("CARGO_PKG_VERSION"); // the workspace's, which every crate shares
    let mut manifest = String::from("[workspace]\nresolver = \"3\"\nmembers = [\n");
    let mut patches = String::from("\n[patch.crates-io]\n");
    for name in PUBLISHED {
        let file = target
            .join("package")
            .join(format!("{name}-{version}.crate"));
        let mut untar = Command::new("tar");
        untar.arg("-xzf").arg(&file).arg("-C").arg(&dir);
        let code = run(&mut untar)?;
        if code != 0 {
            return Ok(code);
        }
        manifest.push_str(&format!("    \"{name}-{version}\",\n"));
        patches.push_str(&format!("{name} = {{ path = \"{name}-{version}\" }}\n"));
    }
    manifest.push_str("]\n");
    manifest.push_str(&patches);
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).map_err(|e| format!("writing {name}: {e}"))
    };
    write("Cargo.toml", &manifest)?;
    // The versions the workspace was tested with.
    let lock = std::fs::read_to_string(crate::cmd::workspace_root().join("Cargo.lock"))
        .map_err(|e| format!("reading Cargo.lock: {e}"))?;
    write("Cargo.lock", &lock)?;
    let mut check = cargo("check --workspace --all-features");
    check.current_dir(&dir).env("CARGO_TARGET_DIR", &target);
    let code = run(&mut check)?;
    if code == 0 {
        eprintln!("xtask: every package compiles from its own files");
    }
    Ok(code)
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
