//! A real OpenID Connect provider for one test: `tests/oidc/provider.mjs`
//! (oauth2-mock-server) on a free loopback port, killed when dropped. Who signs
//! in, and what is wrong with their token, is chosen per authorization request
//! by a `who` cookie (see the script).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct OidcProvider {
    child: Child,
    /// `http://127.0.0.1:PORT`, also the issuer.
    pub url: String,
}

impl OidcProvider {
    pub fn start() -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc/provider.mjs");
        let mut child = Command::new("node")
            .args([script, "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node must be installed (./scripts/setup installs tests/oidc)");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the provider prints its address");
        let url = line
            .trim()
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("the provider did not start: {line:?} (run ./scripts/setup)"))
            .to_owned();
        Self { child, url }
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
