//! The HTTP side of `wasm-ipam metrics --listen`: a few fixed threads, and
//! a bound on everything a client can make the server hold.
//!
//! A metrics endpoint is scraped by one Prometheus every few seconds, and
//! it listens on a node where anyone may connect. tiny_http, used before,
//! started a thread for every connection and read headers without limit:
//! 2,000 idle connections held 1,959 threads, and one 50 MB header cost
//! 48 MB of memory. Here:
//!
//! - one thread accepts, and hands each connection to a queue of
//!   [`QUEUE`]; when the queue is full the connection is closed at once;
//! - [`READERS`] threads read request heads, each at most [`MAX_HEAD`]
//!   bytes and within [`READ_WAIT`], and parse them (httparse);
//! - the caller's thread answers the requests one at a time, as the store
//!   is read one scrape at a time anyway.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Connections waiting for a reader, and requests waiting for an answer.
const QUEUE: usize = 32;
/// Threads reading request heads.
const READERS: usize = 4;
/// The largest request head read: a scrape's is a few hundred bytes.
pub const MAX_HEAD: usize = 16 << 10;
/// How long a client has to send its request head, and to take the answer.
const READ_WAIT: Duration = Duration::from_secs(5);

/// A request read and parsed: its path, and the connection to answer on.
pub struct Request {
    pub path: String,
    /// The client's HTTP minor version, which the answer speaks too.
    minor: u8,
    stream: TcpStream,
}

/// An answer: status, content type and body.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Request {
    /// Writes `response` and closes the connection; a client that went
    /// away is not an error.
    pub fn respond(mut self, response: Response) {
        let reason = match response.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            _ => "Internal Server Error",
        };
        let head = format!(
            "HTTP/1.{} {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.minor,
            response.status,
            response.content_type,
            response.body.len()
        );
        let _ = self
            .stream
            .write_all(head.as_bytes())
            .and_then(|()| self.stream.write_all(response.body.as_bytes()));
    }
}

/// Listens on `addr`: the address it bound, and the requests as they
/// come, read and parsed by the threads it starts.
pub fn listen(addr: SocketAddr) -> std::io::Result<(SocketAddr, Receiver<Request>)> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let (conn_tx, conn_rx) = sync_channel::<TcpStream>(QUEUE);
    let (req_tx, req_rx) = sync_channel::<Request>(QUEUE);
    let conn_rx = Arc::new(Mutex::new(conn_rx));
    for _ in 0..READERS {
        let (conn_rx, req_tx) = (conn_rx.clone(), req_tx.clone());
        std::thread::spawn(move || read_requests(&conn_rx, &req_tx));
    }
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            // A full queue closes the connection (it drops here).
            if let Err(TrySendError::Disconnected(_)) = conn_tx.try_send(stream) {
                return;
            }
        }
    });
    Ok((bound, req_rx))
}

fn read_requests(conns: &Mutex<Receiver<TcpStream>>, requests: &SyncSender<Request>) {
    loop {
        let next = conns.lock().map(|rx| rx.recv());
        let Ok(Ok(mut stream)) = next else { return };
        let _ = stream.set_read_timeout(Some(READ_WAIT));
        let _ = stream.set_write_timeout(Some(READ_WAIT));
        match read_head(&mut stream) {
            Ok((path, minor)) => {
                if let Err(TrySendError::Disconnected(_)) = requests.try_send(Request {
                    path,
                    minor,
                    stream,
                }) {
                    return;
                }
            }
            Err(why) => Request {
                path: String::new(),
                minor: 0,
                stream,
            }
            .respond(Response {
                status: 400,
                content_type: "text/plain; charset=utf-8",
                body: format!("{why}\n"),
            }),
        }
    }
}

/// Reads a request head, at most [`MAX_HEAD`] bytes: its path and HTTP
/// minor version.
fn read_head(stream: &mut TcpStream) -> Result<(String, u8), String> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    loop {
        let n = match stream.read(&mut buf[len..]) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            read => read.map_err(|e| format!("reading the request: {e}"))?,
        };
        if n == 0 {
            return Err("the request ended before its head did".into());
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                return Ok((
                    request.path.unwrap_or_default().to_string(),
                    request.version.unwrap_or(0),
                ));
            }
            Ok(httparse::Status::Partial) if len == MAX_HEAD => {
                return Err(format!("the request head is larger than {MAX_HEAD} bytes"));
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(format!("not an HTTP request: {e}")),
        }
    }
}
