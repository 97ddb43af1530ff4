//! The /metrics endpoint, on a thread of its own with a small tokio runtime.
//!
//! Not on the watch loop's runtime: a burst of kernel records keeps that
//! loop busy draining the ring buffer for as long as it lasts, and a scrape
//! must still be answered within 100 ms. The series-sweeping timer runs
//! here too.
//!
//! Its only clients are scrapers (Prometheus, an agent, curl): one route,
//! GET, one response per connection (`Connection: close`, which every
//! scraper handles). That is a request head read with a size and time limit
//! and one write, so a full HTTP stack (hyper and its dependencies) would add
//! far more code than it replaces. The limits keep a slow or hostile client
//! from holding memory or the loop: 8 KiB of head, 5 s per connection, 16
//! connections at a time.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{Context as _, Result};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use super::metrics::Metrics;

const MAX_HEAD: usize = 8 * 1024;
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: usize = 16;

/// Starts the metrics thread: it serves `metrics` on `listener` (already
/// bound: a port in use failed at start-up) and runs `background` (the
/// sweeper) until the process ends.
pub fn start(
    listener: std::net::TcpListener,
    metrics: Arc<Metrics>,
    background: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the metrics server's event loop")?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            runtime.block_on(async move {
                tokio::spawn(background);
                if let Err(e) = serve(listener, metrics) {
                    tracing::error!("cannot serve metrics: {e:#}");
                    return;
                }
                std::future::pending::<()>().await
            })
        })
        .context("starting the metrics thread")?;
    Ok(())
}

/// Serves `metrics` on `listener`, as a task of the current runtime.
fn serve(listener: std::net::TcpListener, metrics: Arc<Metrics>) -> Result<()> {
    listener
        .set_nonblocking(true)
        .context("configuring the metrics socket")?;
    let listener = TcpListener::from_std(listener).context("serving metrics")?;
    let open = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // EMFILE and the like: wait a little rather than spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                drop(stream);
                continue;
            }
            open.fetch_add(1, Ordering::Relaxed);
            let metrics = metrics.clone();
            let open = open.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, answer(stream, &metrics)).await;
                open.fetch_sub(1, Ordering::Relaxed);
            });
        }
    });
    Ok(())
}

async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request head too large\n",
            )
            .await;
        }
    }
    let head = String::from_utf8_lossy(&head);
    match Request::parse(&head) {
        Request::Metrics { openmetrics } => {
            let (body, content_type) = metrics.encode(openmetrics);
            respond(&mut stream, "200 OK", content_type, &body).await
        }
        Request::NotFound => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                "tracer serves /metrics\n",
            )
            .await
        }
        Request::BadMethod => {
            respond(
                &mut stream,
                "405 Method Not Allowed",
                "text/plain",
                "GET only\n",
            )
            .await
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Request {
    Metrics { openmetrics: bool },
    NotFound,
    BadMethod,
}

impl Request {
    fn parse(head: &str) -> Self {
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or("").split(' ');
        let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
        if method != "GET" {
            return Self::BadMethod;
        }
        let path = target.split('?').next().unwrap_or("");
        if path != "/metrics" && path != "/" {
            return Self::NotFound;
        }
        let openmetrics = lines.any(|l| {
            l.split_once(':').is_some_and(|(name, value)| {
                name.trim().eq_ignore_ascii_case("accept")
                    && value.contains("application/openmetrics-text")
            })
        });
        Self::Metrics { openmetrics }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let prometheus = "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\r\n";
        assert_eq!(
            Request::parse(prometheus),
            Request::Metrics { openmetrics: true }
        );
        assert_eq!(
            Request::parse("GET /metrics HTTP/1.1\r\nAccept: */*\r\n\r\n"),
            Request::Metrics { openmetrics: false }
        );
        assert_eq!(
            Request::parse("GET /other HTTP/1.1\r\n\r\n"),
            Request::NotFound
        );
        assert_eq!(
            Request::parse("POST /metrics HTTP/1.1\r\n\r\n"),
            Request::BadMethod
        );
        assert_eq!(Request::parse("garbage"), Request::BadMethod);
    }

    /// A real socket: status, headers and body of a scrape.
    #[test]
    fn scrape_over_tcp() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let address = listener.local_addr().unwrap();
            serve(listener, Arc::new(Metrics::new(10))).unwrap();
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
                .await
                .unwrap();
            let mut reply = String::new();
            stream.read_to_string(&mut reply).await.unwrap();
            assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
            assert!(reply.contains("Content-Type: text/plain; version=0.0.4"));
            assert!(reply.contains("# TYPE tracer_metrics_series gauge"));
        });
    }
}
