//! Two bare relays built from the proxy's own parts (hyper's HTTP/1 server and client, tokio),
//! doing nothing but relaying: no route, jail, signature or log line. What they cost is the
//! floor for any proxy built on these parts, and the difference between them is what the
//! choice of upstream client costs.
//!
//! - `pooled`: hyper-util's pooled client, as the proxy uses it. Each store connection runs in
//!   a task of its own, so a request and its response cross between two tasks.
//! - `paired`: each client connection keeps its own store connection and drives it inside its
//!   own task: the request future, then the response body, poll the store connection before
//!   their own half of it. No second task, no pool.
//!
//! Each runs in a child process of the bench (`BENCH_BARE_RELAY=kind,port,store`), so that its
//! CPU time is its own.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{Request, Response, Uri};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

use crate::processes::Killed;

type Store = TokioIo<TcpStream>;

/// Starts a bare relay of `kind` on `port`, in front of the store on `store`; under the program
/// `BENCH_BARE_WRAPPER` names, when set (`scripts/count relay` counts with it).
pub fn start(kind: &str, port: u16, store: u16) -> Killed {
    let exe = std::env::current_exe().unwrap();
    let mut command = match std::env::var_os("BENCH_BARE_WRAPPER") {
        Some(wrapper) => {
            let mut command = std::process::Command::new(wrapper);
            command.arg(exe);
            command
        }
        None => std::process::Command::new(exe),
    };
    let child = command
        .env("BENCH_BARE_RELAY", format!("{kind},{port},{store}"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start a bare relay");
    Killed(child)
}

/// Runs the relay `BENCH_BARE_RELAY` names, if it names one; never returns then.
pub fn serve_if_asked() {
    let Ok(spec) = std::env::var("BENCH_BARE_RELAY") else {
        return;
    };
    let parts: Vec<&str> = spec.split(',').collect();
    let [kind, port, store] = parts[..] else {
        panic!("BENCH_BARE_RELAY is kind,port,store: {spec}");
    };
    let listen = SocketAddr::from(([127, 0, 0, 1], port.parse().unwrap()));
    let store = SocketAddr::from(([127, 0, 0, 1], store.parse().unwrap()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await.unwrap();
        match kind {
            "pooled" => pooled(listener, store).await,
            "paired" => paired(listener, store).await,
            other => panic!("no bare relay called {other}"),
        }
    });
    std::process::exit(0);
}

/// The request as the store gets it: the same, aimed at the store.
fn to_store<B>(request: Request<B>, store: SocketAddr) -> Request<B> {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("http://{store}{path}").parse::<Uri>().unwrap();
    Request::from_parts(parts, body)
}

async fn accept(listener: &TcpListener) -> TcpStream {
    let (stream, _) = listener.accept().await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

async fn pooled(listener: TcpListener, store: SocketAddr) {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let client: Client<_, Incoming> = Client::builder(TokioExecutor::new()).build(http);
    loop {
        let stream = accept(&listener).await;
        let client = client.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                client.request(to_store(request, store))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A store connection and the future that drives it.
struct Upstream {
    sender: SendRequest<Incoming>,
    connection: Pin<Box<Connection<Store, Incoming>>>,
}

impl Upstream {
    /// Drives the connection; false once it has ended.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        self.connection.as_mut().poll(cx).is_pending()
    }
}

/// The client connection's idle store connection, between its requests.
type Slot = Arc<Mutex<Option<Upstream>>>;

async fn paired(listener: TcpListener, store: SocketAddr) {
    loop {
        let stream = accept(&listener).await;
        tokio::spawn(async move {
            let slot: Slot = Arc::default();
            let service = service_fn(move |request: Request<Incoming>| {
                exchange(slot.clone(), to_store(request, store), store)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn exchange(
    slot: Slot,
    request: Request<Incoming>,
    store: SocketAddr,
) -> Result<Response<Paired>, hyper::Error> {
    let idle = slot.lock().unwrap().take();
    let mut upstream = match idle {
        Some(upstream) => upstream,
        None => {
            let stream = TcpStream::connect(store).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            Upstream {
                sender,
                connection: Box::pin(connection),
            }
        }
    };
    let mut open = true;
    std::future::poll_fn(|cx| {
        open = open && upstream.drive(cx);
        upstream.sender.poll_ready(cx)
    })
    .await?;
    let mut response = std::pin::pin!(upstream.sender.send_request(request));
    let response = std::future::poll_fn(|cx| {
        open = open && upstream.drive(cx);
        response.as_mut().poll(cx)
    })
    .await?;
    let upstream = open.then_some(upstream);
    if response.body().is_end_stream() {
        *slot.lock().unwrap() = upstream;
        return Ok(response.map(|body| Paired {
            body,
            upstream: None,
            slot,
        }));
    }
    Ok(response.map(|body| Paired {
        body,
        upstream,
        slot,
    }))
}

/// A response body that drives its store connection, and gives it back when it ends.
struct Paired {
    body: Incoming,
    upstream: Option<Upstream>,
    slot: Slot,
}

impl Body for Paired {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(upstream) = &mut this.upstream
            && !upstream.drive(cx)
        {
            this.upstream = None;
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        let ended = matches!(frame, Poll::Ready(None)) || this.body.is_end_stream();
        if ended && this.upstream.is_some() {
            *this.slot.lock().unwrap() = this.upstream.take();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
