//! Test support for the LLM provider tests: the real llama-server (started per test, one at
//! a time, killed on drop) and a tiny scripted HTTP listener on a real loopback socket that
//! serves recorded provider answers and captures the requests it got.
#![allow(dead_code)] // each test binary uses part of it

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Paths of the llama-server binary and the model, from `.ci/llama-server.sh`'s variables.
/// Absent: a failure under CI (it must run these tests), else `None` and a note.
pub fn llama_paths() -> Option<(PathBuf, PathBuf)> {
    let server = std::env::var_os("AGENTMESH_LLAMA_SERVER");
    let model = std::env::var_os("AGENTMESH_LLM_MODEL");
    match (server, model) {
        (Some(s), Some(m)) => Some((s.into(), m.into())),
        _ if std::env::var_os("CI").is_some() => panic!(
            "CI is set but AGENTMESH_LLAMA_SERVER / AGENTMESH_LLM_MODEL are not: \
             run `eval \"$(bash .ci/llama-server.sh)\"` first"
        ),
        _ => {
            eprintln!(
                "skipped: set AGENTMESH_LLAMA_SERVER and AGENTMESH_LLM_MODEL \
                 (eval \"$(bash .ci/llama-server.sh)\") to run the real-server tests"
            );
            None
        }
    }
}

/// One llama-server at a time: with one thread each, two would share two busy cores.
static SERVER_LOCK: Mutex<()> = Mutex::new(());

/// The serialization guard for a test that uses llama-server.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    SERVER_LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running llama-server, killed (by its pid) on drop, also when a test fails.
pub struct LlamaServer {
    child: Option<Child>,
    pub port: u16,
    server: PathBuf,
    model: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl LlamaServer {
    /// Start one on a free port and wait until `GET /health` says ok.
    pub fn start(paths: &(PathBuf, PathBuf)) -> LlamaServer {
        let dir = tempfile::tempdir().unwrap();
        let mut s = LlamaServer {
            child: None,
            port: free_port(),
            server: paths.0.clone(),
            model: paths.1.clone(),
            log: dir.path().join("llama-server.log"),
            _dir: dir,
        };
        s.spawn();
        s.wait_ready();
        s
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new(&self.server)
            .args(["-m".as_ref(), self.model.as_os_str()])
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["-t", "1", "-c", "2048", "-np", "1", "--no-cache-prompt"])
            .args(["--alias", "smollm2", "--no-webui"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.server.display()));
        self.child = Some(child);
    }

    /// Start it without waiting for it to be ready (a retry test races it).
    pub fn spawn_again(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.spawn();
    }

    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        let url = format!("http://127.0.0.1:{}/health", self.port);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("llama-server exited with {status}:\n{}", self.log_text());
            }
            if let Ok(mut r) = agent.get(&url).call() {
                let ok = r.status() == 200
                    && r.body_mut()
                        .read_to_string()
                        .is_ok_and(|b| b.contains("\"ok\""));
                if ok {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "llama-server not ready after 60 s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop it (the port is free again).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One scripted answer of the [`Listener`].
#[derive(Clone, Debug)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Body parts, each written after its delay.
    pub parts: Vec<(Duration, Vec<u8>)>,
    /// Declare the length (whole answers); otherwise the body ends when the socket closes
    /// (how an event stream ends here).
    pub content_length: bool,
    /// Wait this long before the status line.
    pub delay: Duration,
}

impl Canned {
    pub fn json(status: u16, body: &str) -> Canned {
        Canned {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            parts: vec![(Duration::ZERO, body.as_bytes().to_vec())],
            content_length: true,
            delay: Duration::ZERO,
        }
    }

    pub fn sse(body: &str) -> Canned {
        Canned {
            status: 200,
            headers: vec![("Content-Type".into(), "text/event-stream".into())],
            parts: vec![(Duration::ZERO, body.as_bytes().to_vec())],
            content_length: false,
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Canned {
        self.headers.push((k.into(), v.into()));
        self
    }
}

/// A request the listener received.
#[derive(Clone, Debug)]
pub struct Captured {
    pub request_line: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A tiny HTTP/1.1 server on a real loopback socket: the i-th connection gets the i-th
/// canned answer (the last one repeats), each on its own thread, then the socket closes.
pub struct Listener {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<Captured>>>,
    /// Most connections being answered at once.
    pub most_in_flight: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    pub fn start(script: Vec<Canned>) -> Listener {
        assert!(!script.is_empty());
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let most = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (reqs, most2, stop2) = (requests.clone(), most.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let in_flight = Arc::new(AtomicUsize::new(0));
            let mut n = 0;
            let mut workers = Vec::new();
            while !stop2.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((sock, _)) => {
                        let canned = script[n.min(script.len() - 1)].clone();
                        n += 1;
                        let (reqs, most, in_flight) =
                            (reqs.clone(), most2.clone(), in_flight.clone());
                        workers.push(std::thread::spawn(move || {
                            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            let _ = serve(sock, &canned, &reqs);
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                        }));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
            for w in workers {
                let _ = w.join();
            }
        });
        Listener {
            port,
            requests,
            most_in_flight: most,
            stop,
            thread: Some(thread),
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    pub fn captured(&self) -> Vec<Captured> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(sock: TcpStream, canned: &Canned, reqs: &Mutex<Vec<Captured>>) -> std::io::Result<()> {
    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(sock.try_clone()?);
    let mut request_line = String::new();
    r.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    reqs.lock().unwrap().push(Captured {
        request_line: request_line.trim_end().to_owned(),
        headers,
        body,
        at: Instant::now(),
    });
    std::thread::sleep(canned.delay);
    let mut w = sock;
    let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", canned.status);
    for (k, v) in &canned.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if canned.content_length {
        let total: usize = canned.parts.iter().map(|(_, p)| p.len()).sum();
        head.push_str(&format!("Content-Length: {total}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.flush()?;
    for (delay, part) in &canned.parts {
        std::thread::sleep(*delay);
        w.write_all(part)?;
        w.flush()?;
    }
    w.shutdown(std::net::Shutdown::Both)
}

/// A fixture file's text.
pub fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
