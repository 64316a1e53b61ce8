//! The server on a real socket: bind port 0, answer, cut off slow clients,
//! shut down gracefully.

use std::net::SocketAddr;
use std::time::Duration;

use server::{ServeError, ServerConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::helpers::TestApp;

/// A server task on a loopback port and the switch that stops it.
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Running {
    async fn start(test: &TestApp, config: ServerConfig) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve_on(
            listener,
            test.app.clone(),
            config,
            async {
                let _ = stopped.await;
            },
        ));
        Running { addr, stop, task }
    }

    /// Sends the shutdown signal and waits for the task to end cleanly.
    async fn stop(self) {
        self.stop.send(()).expect("server still running");
        let result = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("graceful shutdown within 10 s")
            .expect("server task did not panic");
        assert!(result.is_ok(), "{result:?}");
    }
}

/// `GET /healthz` over a fresh connection; answers the raw response.
async fn raw_healthz(addr: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("send request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read response");
    response
}

#[tokio::test]
async fn serves_on_a_loopback_port_and_stops_on_shutdown() {
    let test = TestApp::new("sqlite").await;
    let server = Running::start(&test, ServerConfig::default()).await;
    let addr = server.addr;

    let response = raw_healthz(addr).await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.ends_with("ok\n"), "{response}");

    server.stop().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "port released"
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let test = TestApp::new("sqlite").await;
    let config = ServerConfig {
        header_read_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let server = Running::start(&test, config).await;

    let mut slow = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("send partial headers");
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest))
        .await
        .expect("the server closes the connection")
        .expect("read until close");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed after {waited:?}"
    );
    let answer = String::from_utf8_lossy(&rest);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );

    // Other clients are still served.
    let response = raw_healthz(server.addr).await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    server.stop().await;
}
