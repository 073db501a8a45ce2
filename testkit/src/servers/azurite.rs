//! Azurite, the Azure Storage emulator (blob and table services), for tests and benches:
//! installed from npm by `.ci/fetch-azurite` into `TIDEMARK_AZURITE_CACHE` (default
//! `/var/cache/tidemark/azurite`), started with `--disableTelemetry` on ports the kernel picks,
//! its workspace in a temporary directory. A missing Azurite fails the test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Azurite's well-known development account and its published key.
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How long Azurite may take to listen (node loads a few hundred modules first).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// An Azurite process, killed with its workspace when dropped.
pub struct AzuriteServer {
    child: Child,
    /// `http://127.0.0.1:PORT/devstoreaccount1`: the blob service, path-style.
    pub blob_endpoint: String,
    /// `http://127.0.0.1:PORT/devstoreaccount1`: the table service, path-style.
    pub table_endpoint: String,
    workspace: TempDir,
}

impl AzuriteServer {
    /// The directory Azurite keeps its databases and blob extents in.
    pub fn workspace(&self) -> &Path {
        self.workspace.path()
    }

    /// Stops the server, keeping its workspace: neither service answers.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Serves the same workspace again, on new ports (the endpoints say which).
    pub fn restart(&mut self) {
        self.stop();
        let started = spawn(self.workspace.path());
        self.child = started.child;
        self.blob_endpoint = started.blob_endpoint;
        self.table_endpoint = started.table_endpoint;
    }
}

impl Drop for AzuriteServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts Azurite with an empty workspace.
pub fn start_azurite() -> AzuriteServer {
    let workspace = tempfile::tempdir().unwrap();
    let started = spawn(workspace.path());
    AzuriteServer {
        child: started.child,
        blob_endpoint: started.blob_endpoint,
        table_endpoint: started.table_endpoint,
        workspace,
    }
}

/// The `azurite` program `.ci/fetch-azurite` installed.
fn azurite() -> PathBuf {
    let cache = std::env::var_os("TIDEMARK_AZURITE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/tidemark/azurite"));
    let program = cache.join("node_modules/.bin/azurite");
    assert!(
        cache.join(".complete").is_file() && program.is_file(),
        "Azurite is not installed in {}: run .ci/fetch-azurite (.ci/run does)",
        cache.display()
    );
    program
}

struct Started {
    child: Child,
    blob_endpoint: String,
    table_endpoint: String,
}

/// Runs Azurite on `workspace` with kernel-chosen ports and waits until both the blob and the
/// table service say where they listen.
fn spawn(workspace: &Path) -> Started {
    let mut child = Command::new(azurite())
        .args(["--disableTelemetry", "--silent", "--location"])
        .arg(workspace)
        .args(["--blobHost", "127.0.0.1", "--blobPort", "0"])
        .args(["--queueHost", "127.0.0.1", "--queuePort", "0"])
        .args(["--tableHost", "127.0.0.1", "--tablePort", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start azurite (is node installed?)");
    let lines = forward_lines(child.stdout.take().unwrap());
    let (mut blob, mut table) = (None, None);
    let deadline = Instant::now() + START_TIMEOUT;
    while blob.is_none() || table.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match lines.recv_timeout(left) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("azurite did not report both services listening within {START_TIMEOUT:?}");
            }
        };
        if let Some(address) = listening_address(&line, "Blob") {
            blob = Some(address);
        } else if let Some(address) = listening_address(&line, "Table") {
            table = Some(address);
        }
    }
    Started {
        child,
        blob_endpoint: format!("{}/{ACCOUNT}", blob.unwrap()),
        table_endpoint: format!("{}/{ACCOUNT}", table.unwrap()),
    }
}

/// Sends each line Azurite prints to the returned channel, and keeps reading after the caller
/// stops listening so the pipe never fills.
fn forward_lines(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = sender.send(line);
        }
    });
    receiver
}

/// `http://127.0.0.1:PORT` from Azurite's "Azurite Blob service is successfully listening at
/// http://127.0.0.1:PORT" for `service`.
fn listening_address(line: &str, service: &str) -> Option<String> {
    let prefix = format!("Azurite {service} service is successfully listening at ");
    let address = line.trim().strip_prefix(&prefix)?;
    Some(address.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_services_answer_on_the_ports_they_report() {
        let server = start_azurite();
        for endpoint in [&server.blob_endpoint, &server.table_endpoint] {
            let host_port = endpoint
                .strip_prefix("http://")
                .and_then(|rest| rest.split('/').next())
                .unwrap();
            std::net::TcpStream::connect(host_port)
                .unwrap_or_else(|e| panic!("connect to {endpoint}: {e}"));
        }
        assert_ne!(server.blob_endpoint, server.table_endpoint);
    }
}
