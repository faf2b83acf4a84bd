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
