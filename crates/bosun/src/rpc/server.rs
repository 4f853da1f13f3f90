//! The ttrpc server: one task per connection, and a cheap call answered on it.
//!
//! ttrpc's own server passes every request through three tasks: the
//! connection's reader spawns a task per request, which hands its answer
//! through a channel to the connection's writer task. That is two or three
//! wake-ups per call, often from one thread to the other, and perf showed
//! them on top of Check's profile (README, "Benchmark"). Here the
//! connection's task reads a request and runs its handler at once; when the
//! handler finishes at its first poll (Check, a status, a read with output
//! waiting) the same task writes the answer, with any other answers ready,
//! in one write. A handler that has to wait (WaitProcess on a running
//! process, a read with nothing to read) goes on in a task of its own, and
//! a method that works long before its first wait (creating a container)
//! starts in one: neither holds up the other calls on the connection.
//!
//! Kept from ttrpc's server, on the same wire: a request's `timeout_nano`
//! (DEADLINE_EXCEEDED), its codes for a bad frame, service or method, the
//! cancellation of a connection's calls when it closes, and a graceful
//! stop that answers the calls in flight. Added: a panic in a handler is
//! answered INTERNAL. The Kata agent protocol has no streaming method, so
//! a data frame is answered as ttrpc answers one for a stream it does not
//! know. Frames reach this loop whole and within bounds: every connection
//! is a `FrameGuard` (`transport/guard.rs`).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use protobuf::Message;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use ttrpc::proto::{
    ResponseInit, MESSAGE_HEADER_LENGTH, MESSAGE_LENGTH_MAX, MESSAGE_TYPE_REQUEST, MESSAGE_TYPE_RESPONSE,
};
use ttrpc::r#async::transport::{Listener, Socket};
use ttrpc::r#async::{MethodHandler, Service, TtrpcContext};
use ttrpc::{get_status, Code, MessageHeader, Request, Response};

/// Methods answered on the connection's task when their handler finishes
/// at its first poll: each does at most a few cheap system calls before
/// it answers or waits. Every other method starts in a task of its own.
const ON_CONNECTION: &[&str] = &[
    "Check",
    "Version",
    "WaitProcess",
    "ReadStdout",
    "ReadStderr",
    "WriteStdin",
    "CloseStdin",
    "TtyWinResize",
    "SignalProcess",
    "GetOOMEvent",
    "GetMetrics",
];

/// Frames read and dispatched before the answers gathered are written.
const FRAMES_PER_WRITE: usize = 32;
/// A read buffer grown past this for a big request is dropped after it.
const KEEP_CAPACITY: usize = 64 << 10;
/// Past this many answer bytes the peer has not taken yet, no new request
/// is read: a client that sends and never reads holds at most this much
/// of the agent's memory in answers (and the guard's bound on requests).
const MAX_UNWRITTEN: usize = 1 << 20;

type Handler = Arc<dyn MethodHandler + Send + Sync>;
type Call = Pin<Box<dyn Future<Output = ttrpc::Result<Response>> + Send>>;

/// The handlers, by service and method name.
struct Table(HashMap<String, HashMap<String, (Handler, bool)>>);

impl Table {
    fn new(services: HashMap<String, Service>) -> Self {
        Self(
            services
                .into_iter()
                .map(|(name, s)| {
                    let methods = s
                        .methods
                        .into_iter()
                        .map(|(m, h)| {
                            let inline = ON_CONNECTION.contains(&m.as_str());
                            (m, (Handler::from(h), inline))
                        })
                        .collect();
                    (name, methods)
                })
                .collect(),
        )
    }
}

/// Serves the connections `listener` accepts until `stop` resolves; then
/// stops accepting, lets every connection answer the calls it has in flight
/// (reading no new ones), and after `grace` closes those still running.
/// Returns whether every connection finished within `grace`.
pub async fn serve(
    mut listener: Listener,
    services: HashMap<String, Service>,
    log: &slog::Logger,
    grace: Duration,
    stop: impl Future<Output = ()>,
) -> bool {
    let table = Arc::new(Table::new(services));
    let (drain, draining) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            () = &mut stop => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            c = listener.next() => match c {
                Some(Ok(sock)) => {
                    let conn = Connection::new(sock, table.clone(), log.clone());
                    conns.spawn(conn.run(draining.clone()));
                }
                Some(Err(e)) => slog::warn!(log, "accept failed"; "error" => %e),
                None => break,
            },
        }
    }
    drop(listener);
    let _ = drain.send(true);
    let finished = tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} })
        .await
        .is_ok();
    conns.abort_all();
    finished
}

/// One connection: the frame being read, the answers not yet written, and
/// the calls running in tasks of their own (aborted when it is dropped).
struct Connection {
    sock: Socket,
    table: Arc<Table>,
    log: slog::Logger,
    frame: Vec<u8>,
    have: usize,
    out: Vec<u8>,
    written: usize,
    running: JoinSet<(u32, Response)>,
    /// No more requests are read: the peer closed, or the server drains.
    reading_done: bool,
    /// The connection is over: its answers cannot be written.
    broken: bool,
}

impl Connection {
    fn new(sock: Socket, table: Arc<Table>, log: slog::Logger) -> Self {
        Self {
            sock,
            table,
            log,
            frame: vec![0; MESSAGE_HEADER_LENGTH],
            have: 0,
            out: Vec::new(),
            written: 0,
            running: JoinSet::new(),
            reading_done: false,
            broken: false,
        }
    }

    /// Serves until the peer leaves; when `draining` turns true, answers
    /// what is in flight, then ends.
    async fn run(mut self, mut draining: watch::Receiver<bool>) {
        tokio::select! {
            biased;
            () = &mut self => return,
            _ = draining.wait_for(|d| *d) => {}
        }
        self.reading_done = true;
        self.await
    }

    /// Reads the next whole frame into `self.frame[..self.have]`; false at
    /// the end of the stream.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            let mut want = MESSAGE_HEADER_LENGTH;
            if self.have >= MESSAGE_HEADER_LENGTH {
                let len = u32::from_be_bytes(self.frame[..4].try_into().expect("4 bytes")) as usize;
                if len > MESSAGE_LENGTH_MAX {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "frame too long")));
                }
                want += len;
                if self.have == want {
                    return Poll::Ready(Ok(true));
                }
            }
            if self.frame.len() < want {
                self.frame.resize(want, 0);
            }
            let mut rb = ReadBuf::new(&mut self.frame[self.have..want]);
            ready!(Pin::new(&mut self.sock).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n == 0 {
                return Poll::Ready(Ok(false));
            }
            self.have += n;
        }
    }

    /// Runs the request in `self.frame`: answers it now, or leaves it
    /// running in a task of its own.
    fn dispatch(&mut self, cx: &mut Context<'_>) {
        let header = MessageHeader::from(&self.frame[..MESSAGE_HEADER_LENGTH]);
        let id = header.stream_id;
        let body = &self.frame[MESSAGE_HEADER_LENGTH..self.have];
        let request = if header.type_ != MESSAGE_TYPE_REQUEST {
            Err(get_status(Code::INVALID_ARGUMENT, "Stream is no longer active"))
        } else if id % 2 != 1 {
            Err(get_status(Code::INVALID_ARGUMENT, "stream id must be odd"))
        } else {
            Request::parse_from_bytes(body).map_err(|e| get_status(Code::INVALID_ARGUMENT, e.to_string()))
        };
        self.have = 0;
        if self.frame.len() > KEEP_CAPACITY {
            self.frame = vec![0; MESSAGE_HEADER_LENGTH];
        }
        let req = match request {
            Ok(r) => r,
            Err(status) => return self.answer(id, ResponseInit::init_status(status)),
        };
        let Some(service) = self.table.0.get(&req.service) else {
            let s = get_status(
                Code::INVALID_ARGUMENT,
                format!("{} service does not exist", req.service),
            );
            return self.answer(id, ResponseInit::init_status(s));
        };
        let Some((handler, inline)) = service.get(&req.method) else {
            let s = get_status(Code::UNIMPLEMENTED, format!("{} method", req.method));
            return self.answer(id, ResponseInit::init_status(s));
        };
        let (handler, inline) = (handler.clone(), *inline);
        let deadline = (req.timeout_nano > 0).then(|| Instant::now() + Duration::from_nanos(req.timeout_nano as u64));
        let ctx = TtrpcContext {
            mh: header,
            metadata: ttrpc::context::from_pb(&req.metadata),
            timeout_nano: req.timeout_nano,
            connection_data: Default::default(),
        };
        let mut call: Call = Box::pin(async move { handler.handler(ctx, req).await });
        if inline {
            match std::panic::catch_unwind(AssertUnwindSafe(|| call.as_mut().poll(cx))) {
                Ok(Poll::Ready(r)) => return self.answer(id, answer_of(r)),
                Ok(Poll::Pending) => {}
                Err(_) => return self.answer(id, panicked()),
            }
        }
        self.running.spawn(async move {
            let r = AssertUnwindSafe(within(deadline, call)).catch_unwind().await;
            (id, r.unwrap_or_else(|_| panicked()))
        });
    }

    /// Queues the answer to stream `id` for writing.
    fn answer(&mut self, id: u32, resp: Response) {
        let at = self.out.len();
        self.out.extend_from_slice(&[0; MESSAGE_HEADER_LENGTH]);
        let fits = resp.write_to_vec(&mut self.out).is_ok()
            && self.out.len() - at - MESSAGE_HEADER_LENGTH <= MESSAGE_LENGTH_MAX;
        if !fits {
            let len = self.out.len() - at - MESSAGE_HEADER_LENGTH;
            self.out.truncate(at);
            let s = get_status(
                Code::INVALID_ARGUMENT,
                format!("response of {len} bytes exceeds the {MESSAGE_LENGTH_MAX}-byte frame limit"),
            );
            return self.answer(id, ResponseInit::init_status(s));
        }
        let len = (self.out.len() - at - MESSAGE_HEADER_LENGTH) as u32;
        let header = &mut self.out[at..at + MESSAGE_HEADER_LENGTH];
        header[..4].copy_from_slice(&len.to_be_bytes());
        header[4..8].copy_from_slice(&id.to_be_bytes());
        header[8] = MESSAGE_TYPE_RESPONSE;
        header[9] = 0;
    }

    /// Writes the queued answers; Pending while the socket is full.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            let n = ready!(Pin::new(&mut self.sock).poll_write(cx, &self.out[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.out.clear();
        self.written = 0;
        if self.out.capacity() > KEEP_CAPACITY {
            self.out = Vec::new();
        }
        Poll::Ready(Ok(()))
    }

    fn close(&mut self, why: &str, e: Option<io::Error>) {
        if let Some(e) = e {
            slog::debug!(self.log, "connection closed"; "why" => why, "error" => %e);
        }
        self.broken = true;
    }
}

impl Future for Connection {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            let mut progress = false;
            while let Poll::Ready(Some(done)) = this.running.poll_join_next(cx) {
                if let Ok((id, resp)) = done {
                    this.answer(id, resp);
                }
                progress = true;
            }
            for _ in 0..FRAMES_PER_WRITE {
                if this.reading_done || this.out.len() - this.written > MAX_UNWRITTEN {
                    break;
                }
                match this.poll_frame(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Ok(true)) => this.dispatch(cx),
                    // The peer left: its calls are cancelled, as ttrpc does.
                    Poll::Ready(Ok(false)) => this.close("end of stream", None),
                    Poll::Ready(Err(e)) => this.close("read", Some(e)),
                }
                progress = true;
                if this.broken {
                    return Poll::Ready(());
                }
            }
            match this.poll_write_out(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Pending => {}
                Poll::Ready(Err(e)) => {
                    this.close("write", Some(e));
                    return Poll::Ready(());
                }
            }
            if this.reading_done && this.running.is_empty() && this.out.is_empty() {
                return Poll::Ready(());
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }
}

/// A handler's result as the answer ttrpc's server gives for it.
fn answer_of(r: ttrpc::Result<Response>) -> Response {
    r.unwrap_or_else(|e| ResponseInit::init_status(get_status(Code::UNKNOWN, e)))
}

fn panicked() -> Response {
    ResponseInit::init_status(get_status(
        Code::INTERNAL,
        "the call failed unexpectedly; see the agent log",
    ))
}

/// Runs `call` to its end, or to the request's deadline.
async fn within(deadline: Option<Instant>, call: Call) -> Response {
    match deadline {
        None => answer_of(call.await),
        Some(d) => match tokio::time::timeout_at(d, call).await {
            Ok(r) => answer_of(r),
            Err(_) => ResponseInit::init_status(get_status(Code::DEADLINE_EXCEEDED, "timeout")),
        },
    }
}

#[cfg(test)]
mod tests {
    //! The server's own promises, on a real unix socket, with methods made
    //! for the test: one held until the test lets it end, one that never ends, one that panics, one
    //! that answers at once. (The agent's methods are tested through it in
    //! `tests/server.rs`.)
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;

    struct Method(&'static str);

    /// Lets the "Held" call end (one test uses it).
    static HELD: tokio::sync::Notify = tokio::sync::Notify::const_new();
    /// "Count" calls run (one test uses it).
    static COUNTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    #[async_trait::async_trait]
    impl MethodHandler for Method {
        async fn handler(&self, _: TtrpcContext, req: Request) -> ttrpc::Result<Response> {
            match self.0 {
                "Held" => HELD.notified().await,
                "Count" => {
                    COUNTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                "Never" => std::future::pending::<()>().await,
                // One answered on the connection's task, one on its own.
                "WaitProcess" | "Panic" => panic!("a bug"),
                _ => {}
            }
            let mut r = Response::new();
            r.payload = req.payload;
            Ok(r)
        }
    }

    fn services() -> HashMap<String, Service> {
        // "Check" and "WaitProcess" run on the connection's task first.
        let methods = ["Held", "Never", "Panic", "WaitProcess", "Check", "Count"]
            .into_iter()
            .map(|m| {
                (
                    m.to_string(),
                    Box::new(Method(m)) as Box<dyn MethodHandler + Send + Sync>,
                )
            })
            .collect();
        let s = Service {
            methods,
            streams: HashMap::new(),
        };
        HashMap::from([("t.S".to_string(), s)])
    }

    /// A server on a socket pair: the client's end, the server's task, and
    /// the sender that stops it.
    fn start(
        grace: Duration,
    ) -> (
        UnixStream,
        tokio::task::JoinHandle<bool>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let (client, server) = UnixStream::pair().expect("socketpair");
        let listener = Listener::new(futures::stream::iter([Ok(server)]).chain(futures::stream::pending()));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let task = tokio::spawn(async move {
            serve(listener, services(), &log, grace, async {
                let _ = stopped.await;
            })
            .await
        });
        (client, task, stop)
    }

    async fn send(c: &mut (impl AsyncWrite + Unpin), id: u32, method: &str, payload: &[u8]) {
        let mut req = Request::new();
        req.service = "t.S".into();
        req.method = method.into();
        req.payload = payload.to_vec();
        let body = req.write_to_bytes().expect("encode");
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(&[MESSAGE_TYPE_REQUEST, 0]);
        f.extend_from_slice(&body);
        c.write_all(&f).await.expect("send");
    }

    async fn answer(c: &mut UnixStream) -> (u32, Response) {
        let mut h = [0u8; MESSAGE_HEADER_LENGTH];
        c.read_exact(&mut h).await.expect("answer header");
        let h = MessageHeader::from(&h[..]);
        assert_eq!(h.type_, MESSAGE_TYPE_RESPONSE);
        let mut body = vec![0; h.length as usize];
        c.read_exact(&mut body).await.expect("answer body");
        (h.stream_id, Response::parse_from_bytes(&body).expect("a Response"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_call_holds_up_no_other_and_a_panic_is_answered_internal() {
        let (mut c, _task, _stop) = start(Duration::from_secs(5));
        // A call that never ends first: the three behind it are answered.
        send(&mut c, 1, "Never", b"").await;
        send(&mut c, 3, "Panic", b"").await;
        send(&mut c, 5, "WaitProcess", b"").await;
        send(&mut c, 7, "Check", b"echo").await;
        let mut answered = Vec::new();
        for _ in 0..3 {
            let (id, r) = answer(&mut c).await;
            answered.push((id, r.status.code.enum_value_or_default(), r.payload));
        }
        answered.sort_by_key(|a| a.0);
        assert_eq!(
            answered,
            vec![
                (3, Code::INTERNAL, vec![]),
                (5, Code::INTERNAL, vec![]),
                (7, Code::OK, b"echo".to_vec())
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stop_answers_the_calls_in_flight_and_reads_no_more() {
        let (mut c, task, stop) = start(Duration::from_secs(30));
        send(&mut c, 1, "Held", b"in flight").await;
        // Check answered: the Held call has been read and is running.
        send(&mut c, 3, "Check", b"").await;
        assert_eq!(answer(&mut c).await.0, 3);
        stop.send(()).expect("stop");
        HELD.notify_one();
        let (id, r) = answer(&mut c).await;
        assert_eq!((id, &r.payload[..]), (1, &b"in flight"[..]));
        assert!(task.await.expect("serve"), "every connection finished within the grace");
        // The connection was closed: nothing more is read or answered.
        let mut rest = Vec::new();
        let _ = c.write_all(b"").await;
        assert_eq!(c.read_to_end(&mut rest).await.expect("EOF"), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_still_running_after_the_grace_is_closed() {
        let (mut c, task, stop) = start(Duration::from_millis(100));
        send(&mut c, 1, "Never", b"").await;
        send(&mut c, 3, "Check", b"").await;
        assert_eq!(answer(&mut c).await.0, 3);
        stop.send(()).expect("stop");
        assert!(!task.await.expect("serve"), "the Never call outlived the grace");
        let mut rest = Vec::new();
        assert_eq!(c.read_to_end(&mut rest).await.expect("EOF"), 0, "closed unanswered");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_never_reads_answers_is_read_no_more() {
        let (c, _task, _stop) = start(Duration::from_secs(5));
        let (_keep_reading_side, mut w) = c.into_split();
        // 200 calls whose answers are 64 KiB each (12.8 MiB in all), and
        // no answer read.
        let payload = vec![7u8; 64 << 10];
        tokio::spawn(async move {
            for i in 0..200u32 {
                send(&mut w, 2 * i + 1, "Count", &payload).await;
            }
        });
        let counted = || COUNTED.load(std::sync::atomic::Ordering::SeqCst);
        // The server takes calls until its unwritten answers pass 1 MiB
        // (16 answers, plus what the socket buffers hold)...
        while counted() < MAX_UNWRITTEN >> 16 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // ...and then no more, however long the client waits.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(counted() < 64, "{} calls read with their answers unread", counted());
    }
}
