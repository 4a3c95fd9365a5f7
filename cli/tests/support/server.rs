//! `flow serve` in a test: started on a free port with the variables its
//! flow reads, stopped when dropped; plain HTTP requests to it.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Flow;

pub struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A request; the status and the body.
pub fn http(port: u16, method: &str, path: &str, key: Option<&str>, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A key made with `flow keys create FILE --name NAME --scope SCOPE`.
pub fn key(dir: &Path, file: &str, env: &[(&str, String)], name: &str, scope: &str) -> String {
    let mut flow = Flow::new(["keys", "create", file, "--name", name, "--scope", scope]).dir(dir);
    for (variable, value) in env {
        flow = flow.env(variable, value.clone());
    }
    flow.expect(0).stdout.trim().to_owned()
}

/// `flow serve FILE --bind 127.0.0.1:PORT MORE...`, once it listens.
pub fn serve(dir: &Path, file: &str, env: &[(&str, String)], more: &[&str]) -> (Server, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let bind = format!("127.0.0.1:{port}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_flow"));
    command
        .args(["serve", file, "--bind", &bind])
        .args(more)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (variable, value) in env {
        command.env(variable, value);
    }
    let server = Server(command.spawn().expect("flow serve starts"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "flow serve did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, port)
}
