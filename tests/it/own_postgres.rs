//! A PostgreSQL server of the test's own: `initdb` into a temp dir, started
//! with `pg_ctl` on a free loopback port, so that a test may stop it and
//! start it again (a database outage) without touching the shared server.
//!
//! PostgreSQL refuses to run as root; under root (as CI runs) its commands
//! run as the `postgres` user through `runuser`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{REQUIRE_POSTGRES_VAR, TempDir, free_port};

pub struct OwnPostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    // Last: removed once the server is stopped.
    dir: TempDir,
}

impl OwnPostgres {
    /// Creates and starts a server. `None` (the test is skipped) where
    /// PostgreSQL's server programs are not installed, unless
    /// `TEST_REQUIRE_POSTGRES` is set: then that is a failure.
    pub fn start() -> Option<Self> {
        let Some(bin) = server_bin() else {
            assert!(
                std::env::var_os(REQUIRE_POSTGRES_VAR).is_none(),
                "{REQUIRE_POSTGRES_VAR} is set but no initdb is installed under /usr/lib/postgresql"
            );
            eprintln!("skipped: no initdb under /usr/lib/postgresql");
            return None;
        };
        let dir = TempDir::new();
        let data = dir.path().join("data");
        if as_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown the server's dir to postgres");
        }
        let out = run(
            &bin.join("initdb"),
            &[
                "-D",
                path(&data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        assert!(out.status.success(), "initdb: {}", text(&out));
        let port = free_port();
        let server = Self {
            bin,
            data,
            port,
            dir,
        };
        server.resume();
        Some(server)
    }

    /// The admin URL (database `postgres`), as `TEST_POSTGRES_URL` would be.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log");
        let out = run(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                path(&self.data),
                "-l",
                path(&log),
                "-o",
                &options,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}\n{}",
            text(&out),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server: `fast` ends every session at once, as a crash or
    /// a failover looks to a client, and waits until it is down.
    pub fn stop(&self) {
        let out = run(
            &self.bin.join("pg_ctl"),
            &["-D", path(&self.data), "-m", "fast", "-w", "stop"],
        );
        assert!(out.status.success(), "pg_ctl stop: {}", text(&out));
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = run(
            &self.bin.join("pg_ctl"),
            &["-D", path(&self.data), "-m", "immediate", "-w", "stop"],
        );
    }
}

/// The newest `/usr/lib/postgresql/N/bin` holding `initdb`.
fn server_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(program: &Path, args: &[&str]) -> std::process::Output {
    let mut command = if as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    command
        .args(args)
        .env_remove("PGDATA")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
