//! The server binary as an operator starts it: what it sets up for its own process.

/// How long the server may take to start before the test gives up on it. Generous: a
/// debug build on a busy CI machine.
const START_MS_MAX: u64 = 30_000;

/// Kills the server when the test ends, whether it passed or not.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Given a server started with the defaults, when it runs, then transparent huge pages
/// are off for its process (`disable_transparent_huge_pages` in main.rs): the kernel
/// reports `THP_enabled: 0` for it. (On a kernel built without THP it reads 0 anyway;
/// on this project's machines, `madvise` mode, it reads 1 without the call.)
#[cfg(target_os = "linux")]
#[test]
fn serve_turns_transparent_huge_pages_off_for_its_process() {
    let dir = tempfile::tempdir().expect("temp dir");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ledger-server"))
        .args(["serve", "--insecure-no-auth", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "off"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start ledger-server");
    let mut server = Server(child);
    let status = format!("/proc/{}/status", server.0.id());
    let started = std::time::Instant::now();
    // The setting is made before anything else in `main`, so the first status that
    // shows the process's own memory already holds it; poll until then.
    let line = loop {
        if let Ok(Some(exit)) = server.0.try_wait() {
            panic!("the server exited at start ({exit}) before it could be looked at");
        }
        let text = std::fs::read_to_string(&status).expect("the server is running");
        if let Some(line) = text.lines().find(|l| l.starts_with("THP_enabled:")) {
            if line.ends_with('0') || started.elapsed().as_millis() > u128::from(START_MS_MAX) {
                break line.to_owned();
            }
        } else {
            panic!("this kernel reports no THP_enabled line (Linux 5.0 or later does)");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(line.split_whitespace().last(), Some("0"), "{line}");
}

/// Given a server started under the usual umask 022, when it has created its data
/// directory, then every directory is its owner's alone (0700) and every file too
/// (0600): the log holds consents and credit reports as served (a security probe
/// found them readable by every local user). `keep_created_files_private` in main.rs.
#[cfg(unix)]
#[test]
fn serve_creates_its_data_directory_for_its_owner_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ledger-server"));
    command
        .args(["serve", "--insecure-no-auth", "--data-dir"])
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "off"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: umask in the child before exec touches only the child's mask.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    let mut server = Server(command.spawn().expect("start ledger-server"));
    let wanted = [
        data.join("log").join("0000000000.seg"),
        data.join("redemption-token.key"),
    ];
    let started = std::time::Instant::now();
    while !wanted.iter().all(|p| p.exists()) {
        if let Ok(Some(exit)) = server.0.try_wait() {
            panic!("the server exited at start ({exit})");
        }
        assert!(
            started.elapsed().as_millis() < u128::from(START_MS_MAX),
            "the server did not create {wanted:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("created").permissions().mode() & 0o777;
    for d in [data.clone(), data.join("log")] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    for f in &wanted {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
}
