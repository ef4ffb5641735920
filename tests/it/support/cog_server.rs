//! A real Cog model server for one test: cog/coglet 0.23.1 from PyPI (installed
//! by `scripts/setup` in /opt/cog-venv), serving the tiny predictor in
//! `tests/cog/predict.py` on a free loopback port, without Docker; killed when
//! dropped. The venv's `bin` comes first on `PATH`: coglet starts its worker
//! as `python`. What the predictor did with each run (started, finished,
//! cancelled) is in its log, read by [`CogServer::events`].

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `scripts/setup` installs it; `COG_VENV` names another.
fn venv() -> PathBuf {
    PathBuf::from(std::env::var("COG_VENV").unwrap_or_else(|_| "/opt/cog-venv".into()))
}

pub struct CogServer {
    pub port: u16,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// How the test predictor behaves.
#[derive(Clone, Copy)]
pub struct Predictor {
    pub steps: u32,
    pub step: Duration,
}

impl CogServer {
    /// Starts a server; `webhook_token` is its `WEBHOOK_AUTH_TOKEN`.
    pub async fn start(predictor: Predictor, webhook_token: Option<&str>) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("runs.log");
        let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cog");
        let bin = venv().join("bin");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new(bin.join("python"));
        command
            .args(["-m", "cog.server.http", "--host", "127.0.0.1"])
            .current_dir(&source)
            .env("PATH", path)
            .env("PORT", port.to_string())
            .env("COG_PREDICT_TYPE_STUB", "predict.py:Predictor")
            .env("COG_TEST_LOG", &log)
            .env("COG_TEST_STEPS", predictor.steps.to_string())
            .env("COG_TEST_STEP_MS", predictor.step.as_millis().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: the worker coglet starts goes with it.
            .process_group(0);
        if let Some(token) = webhook_token {
            command.env("WEBHOOK_AUTH_TOKEN", token);
        }
        let child = command
            .spawn()
            .expect("cog must be installed (./scripts/setup installs it in /opt/cog-venv)");
        let server = Self {
            port,
            child,
            log,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if server.health(&client).await.as_deref() == Some("READY") {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the Cog server on port {port} never became READY");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn health(&self, client: &reqwest::Client) -> Option<String> {
        let body: serde_json::Value = client
            .get(format!("{}/health-check", self.url()))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        body["status"].as_str().map(str::to_owned)
    }

    /// What the predictor recorded: `(event, prompt)` in order.
    pub fn events(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (event, prompt) = line.split_once('\t')?;
                Some((event.to_owned(), prompt.to_owned()))
            })
            .collect()
    }

    /// Stops the server (a GPU machine going away).
    pub fn stop(&mut self) {
        // SAFETY: signals this test's own child process group.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for CogServer {
    fn drop(&mut self) {
        self.stop();
    }
}
