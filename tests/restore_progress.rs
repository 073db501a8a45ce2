//! `tidemark restore` shows its progress as `tidemark backup` does: on a terminal (here the
//! pseudo-terminal `script` gives it), a bar with bytes, rate and time left, drawn on stderr and
//! cleared at the end; off a terminal, no bar at all (a log line every 10 s instead, whose
//! timing and text `progress`'s unit tests check).

mod common;

use std::path::Path;

use testkit::steps::{PrimaryOptions, archiving_primary};
use testkit::{Lab, owner_command, workload};

#[test]
fn restore_shows_a_progress_bar_on_a_terminal_and_none_off_one() {
    let lab = Lab::new("tm-progress-", &common::binaries()).unwrap();
    let cluster = archiving_primary(&lab, &PrimaryOptions::default()).unwrap();
    workload::create_table(&cluster).unwrap();
    common::backups::take_backup(&lab);

    let on_terminal = lab.tmp.path().join("on-terminal");
    let shown = restore_on_a_terminal(&lab, &on_terminal);
    assert!(
        shown.contains(" ETA ") && shown.contains("MiB/") && shown.contains("restored backup "),
        "no progress bar on the terminal: {shown:?}"
    );

    let off_terminal = lab.tmp.path().join("off-terminal");
    let ran = common::run_restore(
        &lab,
        &lab.config_path,
        &off_terminal,
        &["--target", "immediate"],
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(!ran.stderr.contains("ETA"), "{}", ran.stderr);
    assert!(ran.stdout.starts_with("restored backup "), "{}", ran.stdout);
}

/// Runs `tidemark restore` as the cluster owner on a pseudo-terminal (`script`); returns what
/// the terminal showed.
fn restore_on_a_terminal(lab: &Lab, pgdata: &Path) -> String {
    let command = format!(
        "{} --config {} restore --pgdata {} --target immediate",
        lab.bin_dir.join("tidemark").display(),
        lab.config_path.display(),
        pgdata.display()
    );
    let output = owner_command(Path::new("script"), lab.tmp.path())
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env("TERM", "xterm")
        .output()
        .unwrap_or_else(|e| panic!("run script, which gives the restore a terminal: {e}"));
    let shown = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{}: {shown}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    shown
}
