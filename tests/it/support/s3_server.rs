//! A real S3 API for one test: `moto_server` (PyPI `moto[server]`, installed
//! by `scripts/setup` in /opt/moto-venv) on a free loopback port, killed when
//! dropped. It accepts any credentials unless started `with_auth`, where only
//! keys it knows are accepted (so wrong credentials get S3's 403).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `scripts/setup` installs it; `MOTO_SERVER` names another.
fn moto_server() -> String {
    std::env::var("MOTO_SERVER").unwrap_or_else(|_| {
        let installed = "/opt/moto-venv/bin/moto_server";
        if std::path::Path::new(installed).exists() {
            installed.to_owned()
        } else {
            "moto_server".to_owned()
        }
    })
}

pub struct S3Server {
    port: u16,
    child: Child,
}

impl S3Server {
    pub fn start() -> Self {
        Self::spawn(false)
    }

    /// Checks credentials: every request with a key moto does not know is 403.
    pub fn with_auth() -> Self {
        Self::spawn(true)
    }

    fn spawn(auth: bool) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut command = Command::new(moto_server());
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if auth {
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
        }
        let child = command
            .spawn()
            .expect("moto_server must be installed (./scripts/setup installs it)");
        // Killed and reaped on drop, also when it does not come up.
        let server = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("moto_server did not start on port {port}");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket` (a plain PUT, as S3's CreateBucket is).
    pub async fn create_bucket(&self, bucket: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint()))
            .send()
            .await
            .expect("moto answers");
        assert!(response.status().is_success(), "{response:?}");
    }

    /// The object names in `bucket`.
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let listing = reqwest::get(format!("{}/{bucket}?list-type=2", self.endpoint()))
            .await
            .expect("moto answers")
            .text()
            .await
            .unwrap();
        listing
            .split("<Key>")
            .skip(1)
            .filter_map(|part| part.split("</Key>").next())
            .map(str::to_owned)
            .collect()
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the kernel,
    /// nothing is answered, as a hung storage service behaves.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The environment that points the app (`object_store`) at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test-key".into()),
            ("AWS_SECRET_ACCESS_KEY", "test-secret-never-logged".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
