//! What a forwarded call looks like on the socket: a JSON header and a raw
//! body, each as a little-endian `u32` length and its bytes.
//!
//! - The client sends the call's environment (the `CNI_*` and `WASM_IPAM_*`
//!   variables, nothing else), its working directory and its two
//!   deadlines, then the network config exactly as it read it from stdin.
//! - The server acknowledges with one byte ([`ACK`]) as soon as it has
//!   read the request, before the call runs: a server that cannot take it
//!   (stopped, or busy with as many calls as it runs at once) does not,
//!   and the client soon runs the call itself.
//! - The server answers with the exit status and the call's log lines,
//!   then what the call prints on stdout.
//!
//! The socket is a root-only file that both ends are built from this one
//! binary for, so the format has no version: a server and a client of
//! different builds that disagree fail to parse, and the client then runs
//! the call itself.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// The largest frame either end reads: the config on stdin is capped at
/// 16 MiB by the binary, and a header is a few kilobytes.
const MAX_FRAME: u32 = 17 << 20;

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    /// The `CNI_*` and `WASM_IPAM_*` variables of the client's environment.
    pub env: Vec<(String, String)>,
    /// The client's working directory: relative paths in the config are
    /// relative to it, as they are for a call run in its own process.
    pub cwd: String,
    /// Milliseconds since the epoch after which the client no longer waits
    /// for [`ACK`]: a server that reads the request later drops it.
    pub ack_by_ms: u64,
    /// Milliseconds since the epoch after which the client no longer waits
    /// for the answer: the call never commits past it (`guard`).
    pub deadline_ms: u64,
}

/// What the server sends once it has read a request and will run it.
pub const ACK: u8 = 0x06;

#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    /// The process exit status the call ends with: 0 or 1.
    pub status: u8,
    /// The call's log lines, for the client's stderr.
    pub stderr: Vec<String>,
}

pub fn write_frame(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|&n| n <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(bytes)
}

pub fn read_frame(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes; the limit is {MAX_FRAME}"),
        ));
    }
    let mut bytes = vec![0; len as usize];
    r.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// A header and a body, in one write so a small call is one packet.
pub fn send(w: &mut impl Write, header: &impl Serialize, body: &[u8]) -> io::Result<()> {
    let header = serde_json::to_vec(header).map_err(io::Error::other)?;
    let mut buf = Vec::with_capacity(header.len() + body.len() + 8);
    write_frame(&mut buf, &header)?;
    write_frame(&mut buf, body)?;
    w.write_all(&buf)?;
    w.flush()
}

/// A header and a body, as [`send`] wrote them.
pub fn receive<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> io::Result<(T, Vec<u8>)> {
    let header = read_frame(r)?;
    let header = serde_json::from_slice(&header).map_err(io::Error::other)?;
    Ok((header, read_frame(r)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reads_back_and_a_short_or_huge_frame_is_refused() {
        let req = Request {
            env: vec![("CNI_COMMAND".into(), "ADD".into())],
            cwd: "/".into(),
            ack_by_ms: 1,
            deadline_ms: 2,
        };
        let mut buf = Vec::new();
        send(&mut buf, &req, b"{\"cniVersion\":\"1.1.0\"}").unwrap();
        let (back, body): (Request, _) = receive(&mut buf.as_slice()).unwrap();
        assert_eq!(back.env, req.env);
        assert_eq!(body, b"{\"cniVersion\":\"1.1.0\"}");
        let cut = &buf[..buf.len() - 1];
        assert!(receive::<Request>(&mut &cut[..]).is_err());
        let huge = (MAX_FRAME + 1).to_le_bytes();
        let err = read_frame(&mut &huge[..]).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
    }
}
