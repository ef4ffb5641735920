//! The real server binary, started as an owner would start it: its own working
//! directory, settings from the environment, output captured for assertions.
//! Stopped (killed) when dropped, or asked to stop with SIGTERM.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct AppProcess {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The binary and its environment, in a fresh working directory.
fn command(env: &[(&str, String)]) -> (Command, tempfile::TempDir, u16) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_lofianime"));
    command
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
        .env("LEPTOS_OUTPUT_NAME", "lofianime")
        .env("LEPTOS_SITE_ROOT", dir.path().join("site"))
        .env("RUST_LOG", "info")
        .env("LOFIANIME_IMAGE__WIDTH", "64")
        .env("LOFIANIME_IMAGE__HEIGHT", "64")
        .stdout(Stdio::from(
            std::fs::File::create(dir.path().join("out.log")).unwrap(),
        ))
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("err.log")).unwrap(),
        ));
    for (name, value) in env {
        command.env(name, value);
    }
    // A test that must know the address first (to give it to others) sets it.
    let port = env
        .iter()
        .find(|(name, _)| *name == "LEPTOS_SITE_ADDR")
        .and_then(|(_, addr)| addr.rsplit(':').next()?.parse().ok())
        .unwrap_or(port);
    (command, dir, port)
}

impl AppProcess {
    /// Starts the app and waits until `/healthz` answers.
    pub async fn start(env: &[(&str, String)]) -> Self {
        let (mut command, dir, port) = command(env);
        let child = command.spawn().expect("the server binary");
        let mut app = Self { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(response) = reqwest::get(app.url("/healthz")).await {
                if response.status().is_success() {
                    return app;
                }
            }
            if let Ok(Some(status)) = app.child.try_wait() {
                panic!("the app exited with {status}: {}", app.output());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the app did not start: {}", app.output());
    }

    /// Runs the app until it exits by itself (a start-up refusal), bounded.
    pub async fn run_to_exit(env: &[(&str, String)], bound: Duration) -> (ExitStatus, String) {
        let (mut command, dir, _) = command(env);
        let mut child = command.spawn().expect("the server binary");
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status, output_in(dir.path()));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "the app did not exit within {bound:?}: {}",
                    output_in(dir.path())
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id (to read its memory from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The JSON answer to `GET path`.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        reqwest::get(self.url(path))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The body of the answer to `GET path`, as text.
    pub async fn get_text(&self, path: &str) -> String {
        reqwest::get(self.url(path))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The app's working directory.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// Everything the app has printed so far.
    pub fn output(&self) -> String {
        output_in(self.dir.path())
    }

    /// Sends SIGTERM, as a container platform does before a redeploy.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `bound`.
    pub async fn wait(&mut self, bound: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        None
    }
}

fn output_in(dir: &Path) -> String {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    format!("{}{}", read("out.log"), read("err.log"))
}

impl Drop for AppProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
