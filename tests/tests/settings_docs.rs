//! The settings the documentation names are the settings the code reads: the table of
//! docs/API.md lists every variable of `Config` exactly once, and the READMEs name no
//! variable that does not exist.

use std::collections::BTreeSet;

use otp_core::Config;

/// Variables that are not settings of the library: the configuration file's name, and the
/// example apps' choice of store and mailer.
const NOT_SETTINGS: &[&str] = &["OTP_AUTH_CONFIG_FILE", "OTP_AUTH_STORE", "OTP_AUTH_MAILER"];

fn read(path: &str) -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    std::fs::read_to_string(format!("{root}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The variables of the settings table of docs/API.md: the first cell of each row of the
/// table under `## Settings`, names after `OTP_AUTH_` separated by ` / ` (the
/// configuration file's row aside).
fn api_table() -> Vec<String> {
    let api = read("docs/API.md");
    let section = api
        .split("\n## Settings")
        .nth(1)
        .unwrap_or_else(|| panic!("docs/API.md has no Settings section"));
    // Up to the next heading: the example app's own variables follow under one.
    let section = section.split("\n#").next().unwrap_or(section);
    let mut names = Vec::new();
    for line in section.lines().filter(|l| l.starts_with("| ")) {
        let cell = line
            .trim_start_matches("| ")
            .split(" |")
            .next()
            .unwrap_or("");
        for name in cell.split(" / ").map(str::trim) {
            let name = format!("OTP_AUTH_{name}");
            if name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
                && !NOT_SETTINGS.contains(&name.as_str())
            {
                names.push(name);
            }
        }
    }
    names
}

#[test]
fn the_api_table_lists_every_variable_once() {
    let table = api_table();
    let listed: BTreeSet<&str> = table.iter().map(String::as_str).collect();
    assert_eq!(
        listed.len(),
        table.len(),
        "a variable is listed twice: {table:?}"
    );
    let read: BTreeSet<&str> = Config::variables().collect();
    let missing: Vec<_> = read.difference(&listed).collect();
    let unknown: Vec<_> = listed.difference(&read).collect();
    assert!(missing.is_empty(), "docs/API.md does not list {missing:?}");
    assert!(
        unknown.is_empty(),
        "docs/API.md lists {unknown:?}, which Config does not read"
    );
}

#[test]
fn the_docs_name_only_real_variables() {
    let known: BTreeSet<&str> = Config::variables()
        .chain(NOT_SETTINGS.iter().copied())
        .collect();
    for doc in [
        "README.md",
        "SECURITY.md",
        "docs/API.md",
        "docs/ARCHITECTURE.md",
        "examples/custom-mailer/README.md",
    ] {
        let text = read(doc);
        for (i, _) in text.match_indices("OTP_AUTH_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            // `OTP_AUTH_` alone is the prefix; a trailing `_` starts an abbreviation
            // (`OTP_AUTH_SMTP_SERVER` / `_PORT`).
            let name = name.trim_end_matches('_');
            if name == "OTP_AUTH" {
                continue;
            }
            assert!(
                known.contains(name),
                "{doc} names {name}, which is no setting"
            );
        }
    }
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail closures return its large error
fn every_variable_is_read_from_the_environment_by_its_name() {
    // Each variable set to a value of the wrong type is reported under its own name: the
    // name the documentation gives is the one the configuration reads.
    for var in Config::variables() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(var, "[not a value of any setting]");
            match Config::load() {
                Err(e) => assert!(e.to_string().contains(var), "{var}: {e}"),
                // A text setting takes any text: the configuration then differs from the
                // defaults (a secret shows as set, not by its value).
                Ok(c) => assert_ne!(
                    format!("{c:?}"),
                    format!("{:?}", Config::default()),
                    "{var} was not read"
                ),
            }
            Ok(())
        });
    }
}
