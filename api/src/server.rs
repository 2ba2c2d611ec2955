//! The HTTP server: hyper with timeouts, serving the poem endpoint.
//!
//! poem's own `Server` sets no HTTP/1 header read timeout (hyper's default needs a timer that
//! poem does not give it), so a client that sends its headers one byte at a time, or opens a
//! connection and sends nothing, holds it for as long as it likes; hundreds of them exhaust
//! the process's file descriptors. Here every connection must send each request's headers
//! within `header_timeout`, and an idle keep-alive connection is closed after it. Request
//! bodies are read under their own deadline by the middleware. A write that waits longer
//! than `write_timeout` for the client to read closes the connection: a client that stops
//! reading a stream holds neither its connection nor the stream's backlog for ever.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use poem::endpoint::{DynEndpoint, ToDynEndpoint};
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Addr, Endpoint, EndpointExt, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long in-flight requests may finish after a shutdown begins.
const DRAIN: Duration = Duration::from_secs(10);
/// The largest request head (request line and headers) hyper buffers; the middleware
/// answers larger-than-allowed heads below it with a problem of its own.
const MAX_HEAD_BYTES: usize = 256 * 1024;

/// Serves `endpoint` on `listener` until `shutdown`, then lets requests in flight finish
/// (for at most ten seconds).
pub(crate) async fn run(
    listener: TcpListener,
    endpoint: impl Endpoint + 'static,
    header_timeout: Duration,
    write_timeout: Duration,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let endpoint: Arc<dyn DynEndpoint<Output = Response>> =
        Arc::new(ToDynEndpoint(endpoint.map_to_response()));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(header_timeout))
        .keep_alive_timeout(header_timeout);
    let builder = Arc::new(builder);
    let local = listener.local_addr()?;
    let mut connections = JoinSet::new();
    loop {
        let (stream, remote) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (builder, endpoint, shutdown) = (
            Arc::clone(&builder),
            Arc::clone(&endpoint),
            shutdown.clone(),
        );
        connections.spawn(serve_connection(
            builder,
            endpoint,
            stream,
            local,
            remote,
            (header_timeout, write_timeout),
            shutdown,
        ));
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "requests still open after the drain; closing them"
        );
        connections.abort_all();
    }
    Ok(())
}

async fn serve_connection(
    builder: Arc<auto::Builder<TokioExecutor>>,
    endpoint: Arc<dyn DynEndpoint<Output = Response>>,
    stream: tokio::net::TcpStream,
    local: SocketAddr,
    remote: SocketAddr,
    (header_timeout, write_timeout): (Duration, Duration),
    shutdown: CancellationToken,
) {
    // hyper's header timeout starts with the first byte (the protocol is told by the first
    // bytes): a connection that sends nothing is closed here.
    let mut first = [0u8; 1];
    match tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return,
    }
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let endpoint = Arc::clone(&endpoint);
        async move {
            let req: poem::Request = (
                req,
                LocalAddr(Addr::SocketAddr(local)),
                RemoteAddr(Addr::SocketAddr(remote)),
                poem::http::uri::Scheme::HTTP,
            )
                .into();
            let response = endpoint.get_response(req).await;
            Ok::<hyper::Response<_>, Infallible>(response.into())
        }
    });
    let stream = WriteDeadline::new(stream, write_timeout);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                if error_chain_has(&*error, io::ErrorKind::TimedOut) {
                    tracing::info!(%remote, "cut off a client that read nothing for {write_timeout:?}");
                } else {
                    tracing::debug!(%error, "connection ended with an error");
                }
            }
        }
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// A connection whose writes fail once one has waited `limit` for the client to make room.
struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, limit: Duration) -> Self {
        WriteDeadline {
            inner,
            limit,
            waiting: None,
        }
    }

    /// What a write that returned `polled` gives: its result, or after `limit` of
    /// waiting, an error that ends the connection.
    fn deadline<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.waiting = None;
            return polled;
        }
        let limit = self.limit;
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match waiting.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {limit:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.deadline(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.deadline(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.deadline(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Whether an I/O error of `kind` is in the chain of `error`.
fn error_chain_has(error: &(dyn std::error::Error + 'static), kind: io::ErrorKind) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == kind)
        {
            return true;
        }
        next = error.source();
    }
    false
}
