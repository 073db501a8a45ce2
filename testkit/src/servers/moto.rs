//! A versioned S3 server for what `s3s-fs` lacks (object versions: it answers ListObjectVersions
//! with 501 NotImplemented): moto's `moto_server` (`pip install 'moto[server]==5.2.1'`; `.ci/run`
//! does), started on a free loopback port. It keeps everything in memory and takes any keys; its
//! request log is kept, so a test can see what was asked of it. A missing `moto_server` fails the
//! test.

use std::fs::File;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::servers::s3s_fs::unused_port;

/// The moto release `.ci/run` installs.
pub const MOTO_VERSION: &str = "5.2.1";

/// A `moto_server` process, killed when dropped.
pub struct MotoServer {
    child: Child,
    pub endpoint: String,
    /// Holds the request log.
    dir: TempDir,
}

impl MotoServer {
    /// Every request line the server logged so far (`GET /src/a?versionId=… HTTP/1.1`), in order.
    pub fn requests(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        log.lines()
            .filter_map(|line| line.split('"').nth(1))
            .map(str::to_owned)
            .collect()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("requests.log")
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `moto_server` on a free loopback port, once it answers.
pub fn start_moto() -> MotoServer {
    let dir = tempfile::Builder::new()
        .prefix("tm-moto-")
        .tempdir()
        .unwrap();
    let log = File::create(dir.path().join("requests.log")).unwrap();
    let port = unused_port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("PYTHONUNBUFFERED", "1")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "start moto_server ({e}): install it with pip install 'moto[server]=={MOTO_VERSION}' (.ci/run does)"
            )
        });
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    MotoServer {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        dir,
    }
}
