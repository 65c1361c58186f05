//! Locating the server binaries, and installing them with apt-get when
//! running as root on Debian.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cmd::run;

/// Directories searched after `PATH` (a non-root `PATH` often lacks the
/// `sbin` ones, where Debian puts `smtp-sink`).
const EXTRA_DIRS: [&str; 5] = [
    "/usr/sbin",
    "/usr/local/sbin",
    "/sbin",
    "/usr/bin",
    "/usr/local/bin",
];

/// Policy file that keeps `invoke-rc.d` from starting the system services
/// of the packages being installed (we only run our own processes).
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// The binaries, and the Debian package that provides each.
const PROGRAMS: [(&str, &str); 5] = [
    ("redis-server", "redis-server"),
    ("redis-cli", "redis-tools"),
    ("smtp-sink", "postfix"),
    ("chromium", "chromium"),
    ("chromedriver", "chromium-driver"),
];

/// Paths of the server binaries.
#[derive(Debug)]
pub(crate) struct Tools {
    /// `redis-server`.
    pub(crate) redis_server: PathBuf,
    /// `redis-cli`.
    pub(crate) redis_cli: PathBuf,
    /// postfix's `smtp-sink`.
    pub(crate) smtp_sink: PathBuf,
    /// Debian's Chromium, for the browser tests.
    pub(crate) chromium: PathBuf,
    /// Its WebDriver server.
    pub(crate) chromedriver: PathBuf,
}

impl Tools {
    /// Finds the binaries, installing the missing ones when root on Debian.
    pub(crate) fn locate_or_install() -> Result<Self, String> {
        let missing = missing_packages();
        if !missing.is_empty() {
            let names: Vec<&str> = PROGRAMS
                .iter()
                .filter(|(_, package)| missing.contains(package))
                .map(|(program, _)| *program)
                .collect();
            let names = names.join(", ");
            let packages = missing.join(" ");
            if !can_install() {
                return Err(format!(
                    "missing {names}; install the Debian packages {packages} \
                     (`sudo apt-get install --no-install-recommends {packages}`) \
                     or run as root on Debian to let xtask install them"
                ));
            }
            eprintln!("xtask: {names} missing, installing {packages} with apt-get");
            install(&missing)?;
        }
        let locate = |name: &str| {
            find_program(name).ok_or_else(|| format!("{name} still not found after installation"))
        };
        let tools = Self {
            redis_server: locate("redis-server")?,
            redis_cli: locate("redis-cli")?,
            smtp_sink: locate("smtp-sink")?,
            chromium: locate("chromium")?,
            chromedriver: locate("chromedriver")?,
        };
        Ok(tools)
    }
}

/// Debian packages of the binaries that cannot be found.
fn missing_packages() -> Vec<&'static str> {
    let mut packages: Vec<&'static str> = Vec::new();
    for (program, package) in PROGRAMS {
        if find_program(program).is_none() && !packages.contains(&package) {
            packages.push(package);
        }
    }
    packages
}

/// Searches `PATH`, then the usual system directories, for an executable file.
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// Whether we run as root (`id -u` prints 0).
pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout.trim_ascii() == b"0")
}

/// Root on a Debian-like system with apt-get.
fn can_install() -> bool {
    is_root() && find_program("apt-get").is_some() && Path::new("/etc/debian_version").exists()
}

/// Installs Debian `packages` with apt-get, or says which to install when not root on
/// Debian.
pub(crate) fn install_packages(packages: &[&str]) -> Result<(), String> {
    if !can_install() {
        let packages = packages.join(" ");
        return Err(format!(
            "install the Debian packages {packages} \
             (`sudo apt-get install --no-install-recommends {packages}`) \
             or run as root on Debian to let xtask install them"
        ));
    }
    eprintln!("xtask: installing {} with apt-get", packages.join(" "));
    install(packages)
}

/// `apt-get update` and `apt-get install` of the packages, non-interactively
/// and without starting their system services.
fn install(packages: &[&str]) -> Result<(), String> {
    if packages.contains(&"postfix") {
        // Without this, postfix's postinst asks which mail setup to use.
        preseed(
            "postfix postfix/main_mailer_type select No configuration\n\
             postfix postfix/mailname string localhost\n",
        )?;
    }
    let _services_off = PolicyRcGuard::install();

    let apt_get = |args: &[&str]| -> Result<(), String> {
        let mut command = Command::new("apt-get");
        command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            // Keeps stdout for the `export` lines of `cargo xtask servers`.
            .stdout(std::io::stderr());
        let status = run(&mut command)?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "`{}` failed ({status})",
                crate::cmd::display(&command)
            ))
        }
    };
    apt_get(&["-q", "update"])?;
    let mut install = vec!["-q", "install", "-y", "--no-install-recommends"];
    install.extend_from_slice(packages);
    apt_get(&install)
}

/// Feeds answers to debconf before installing.
fn preseed(selections: &str) -> Result<(), String> {
    let mut child = Command::new("debconf-set-selections")
        .stdin(Stdio::piped())
        .stdout(std::io::stderr())
        .spawn()
        .map_err(|e| format!("cannot run debconf-set-selections: {e}"))?;
    let written = match child.stdin.take() {
        Some(mut stdin) => stdin.write_all(selections.as_bytes()),
        None => Ok(()),
    };
    let status = child
        .wait()
        .map_err(|e| format!("debconf-set-selections: {e}"))?;
    written.map_err(|e| format!("writing to debconf-set-selections: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("debconf-set-selections failed ({status})"))
    }
}

/// A `policy-rc.d` that denies every service start, present while it lives
/// (only if there was none before; an existing one is left alone).
#[derive(Debug)]
struct PolicyRcGuard {
    created: bool,
}

impl PolicyRcGuard {
    fn install() -> Self {
        let path = Path::new(POLICY_RC_D);
        if path.exists() {
            return Self { created: false };
        }
        let created = std::fs::write(
            path,
            "#!/bin/sh\n# written by cargo xtask during apt-get install\nexit 101\n",
        )
        .and_then(|()| make_executable(path))
        .is_ok();
        if !created {
            // Services may start; harmless, our servers use their own free ports.
            eprintln!("xtask: could not write {POLICY_RC_D}; system services may get started");
            let _ = std::fs::remove_file(path);
        }
        Self { created }
    }
}

impl Drop for PolicyRcGuard {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_file(POLICY_RC_D);
        }
    }
}

#[cfg(unix)]
fn make_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> std::io::Result<()> {
    Ok(())
}
