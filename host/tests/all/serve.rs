//! `wasm-ipam serve`: calls forwarded to a node's server give what a
//! one-shot process gives, and every call still works without it.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cni::exec::{Call, Outcome};
use serde_json::{Value, json};
use wasm_ipam::envvars::{DEBUG, SOCKET, TEST_CRASH_AT};

use crate::common::{Net, plugin, run_within, test_policy};

/// A server on a socket of its own, killed when dropped.
pub(crate) struct Server {
    child: Child,
    socket: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    pub(crate) fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("run").join("wasm-ipam.sock");
        let mut server = Server::start_at(&socket, Stdio::piped());
        server._dir = Some(dir);
        server
    }

    /// A server on `socket`, its stderr to `stderr`.
    pub(crate) fn start_at(socket: &Path, stderr: Stdio) -> Server {
        let socket = socket.to_path_buf();
        let mut child = Command::new(plugin())
            .args(["serve", "--socket"])
            .arg(&socket)
            .env(SOCKET, &socket)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        // It prints one line once it listens.
        let mut first = [0u8; 1];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut first)
            .unwrap();
        Server {
            child,
            socket,
            _dir: None,
        }
    }

    pub(crate) fn path(&self) -> &str {
        self.socket.to_str().unwrap()
    }

    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the server to exit, and what it printed on stderr.
    fn wait(&mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().unwrap();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            pipe.read_to_string(&mut stderr).unwrap();
        }
        (status, stderr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `call`, forwarded to the server on `socket` (empty: none), with the
/// server's own debug line asked for.
pub(crate) fn via(call: Call, socket: &str) -> Call {
    call.env(SOCKET, socket).env(DEBUG, "1")
}

pub(crate) fn served(out: &Outcome) -> bool {
    out.stderr.contains("served by wasm-ipam serve")
}

#[test]
fn served_calls_answer_and_store_exactly_what_one_shot_calls_do() {
    let server = Server::start();
    let ipam = json!({"policy": "host-local", "ranges": [[{"subnet": "10.140.0.0/29"}]]});
    let (alone, with) = (
        Net::with_ipam("1.1.0", ipam.clone()),
        Net::with_ipam("1.1.0", ipam),
    );
    let valid = json!([{"containerID": "c2", "ifname": "eth0"}]);
    let calls = [
        (Call::attach("ADD", "c1"), None),
        (Call::attach("ADD", "c2"), None),
        (Call::attach("ADD", "c1"), None),
        (Call::attach("CHECK", "c2"), None),
        (Call::attach("DEL", "c1"), None),
        (Call::attach("ADD", "c3").ifname("net1"), None),
        (Call::new("STATUS"), None),
        (Call::new("GC"), Some(valid)),
        (Call::new("VERSION"), None),
        (Call::attach("ADD", ""), None),
    ];
    // The result of ADD c2 on each network, CHECK's prevResult.
    let mut added: [Option<Value>; 2] = [None, None];
    for (call, gc_valid) in calls {
        let mut outs = Vec::new();
        for (i, (net, socket)) in [(&alone, ""), (&with, server.path())]
            .into_iter()
            .enumerate()
        {
            let mut conf = net.conf.clone();
            if let Some(valid) = &gc_valid {
                conf["cni.dev/valid-attachments"] = valid.clone();
            }
            if let Some(prev) = added[i].as_ref().filter(|_| call.command == "CHECK") {
                conf["prevResult"] = prev.clone();
            }
            let out = net.run_conf(&via(call.clone(), socket), &conf);
            if call.command == "ADD" && call.container_id.as_deref() == Some("c2") {
                added[i] = Some(out.json());
            }
            outs.push(out);
        }
        let (one, two) = (&outs[0], &outs[1]);
        assert_eq!(
            (&one.stdout, one.code),
            (&two.stdout, two.code),
            "{}: one-shot against served",
            call.command
        );
        assert!(!served(one), "{}", one.stderr);
        // VERSION is answered by the process at once.
        assert_eq!(served(two), call.command != "VERSION", "{}", two.stderr);
    }
    assert_eq!(alone.store_dump(), with.store_dump());
    // GC kept only c2's.
    assert_eq!(alone.leased(), ["10.140.0.3"]);
}

#[test]
fn without_a_server_or_with_a_stale_socket_the_call_runs_in_its_own_process() {
    let net = Net::host_local("1.0.0", "10.141.0.0/24");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.sock");
    let out = net.run(&via(Call::attach("ADD", "c1"), missing.to_str().unwrap()));
    assert!(out.ok() && !served(&out), "{}", out.stderr);
    // A server that died without removing its socket: connecting is
    // refused.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let out = net.run(&via(Call::attach("ADD", "c2"), stale.to_str().unwrap()));
    assert!(out.ok() && !served(&out), "{}", out.stderr);
    assert_eq!(net.leased(), ["10.141.0.2", "10.141.0.3"]);
    // A server replaces a stale socket, and refuses a live one's.
    let mut server = Server::start();
    let again = Command::new(plugin())
        .args(["serve", "--socket", server.path()])
        .output()
        .unwrap();
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("a server already answers on"), "{err}");
    server.signal("-TERM");
    assert!(server.wait().0.success());
}

#[test]
fn the_socket_is_root_only_and_goes_on_sigterm() {
    let mut server = Server::start();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&server.socket), 0o600);
    assert_eq!(mode(server.socket.parent().unwrap()), 0o700);

    // A process of another user, where it can connect, does not tell the
    // server its call (a server of another user is not its to trust): it
    // runs the call itself (and here fails, as that user cannot write the
    // store).
    let net = Net::host_local("1.0.0", "10.142.0.0/24");
    let run = server.socket.parent().unwrap();
    for dir in [run, run.parent().unwrap()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&server.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let nobody = Command::new(plugin())
        .env_clear()
        .envs(via(Call::attach("ADD", "c1"), server.path()).vars())
        .env("PATH", "/usr/bin:/bin")
        .uid(65534)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = nobody.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains("served by wasm-ipam"), "{stderr}");
    assert!(
        stderr.contains("is served by user 0, not by this process's user"),
        "{stderr}"
    );
    assert!(!net.data_dir().exists());
    // And the server answers no peer of another user, even one that sends
    // a request anyway: the connection is closed unanswered.
    let socket = server.socket.clone();
    let answer = std::thread::spawn(move || {
        rustix::thread::set_thread_uid(rustix::fs::Uid::from_raw(65534)).unwrap();
        let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        let request = br#"{"env":[["CNI_COMMAND","ADD"]],"cwd":"/","ack_by_ms":0,"deadline_ms":0}"#;
        let mut frame = (request.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(request);
        frame.extend_from_slice(&0u32.to_le_bytes());
        std::io::Write::write_all(&mut stream, &frame).unwrap();
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got);
        got
    })
    .join()
    .unwrap();
    assert!(answer.is_empty(), "{answer:?}");

    server.signal("-TERM");
    let (status, stderr) = server.wait();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("refused a call from user 65534"),
        "{stderr}"
    );
    assert!(stderr.contains("stopped serving on"), "{stderr}");
    assert!(!server.socket.exists());
}

#[test]
fn a_server_killed_during_a_call_leaves_nothing_and_the_call_runs_itself() {
    let mut server = Server::start();
    let net = Net::host_local("1.0.0", "10.143.0.0/24");
    let socket = server.path().to_string();
    let add = |id: &str| via(Call::attach("ADD", id), &socket);
    let first = net.run(&add("c1"));
    assert!(first.ok() && served(&first), "{}", first.stderr);

    // The next call waits, inside the server, for the store's write lock,
    // which the test holds; the server dies there.
    let store = wasm_ipam::store::SqliteStore::open(&net.data_dir()).unwrap();
    let held = wasm_ipam::store::Store::begin(&store, "testnet").unwrap();
    let waiting = std::thread::scope(|s| {
        let call = s.spawn(|| net.run(&add("c2")));
        std::thread::sleep(Duration::from_millis(500));
        server.signal("-KILL");
        server.wait();
        std::thread::sleep(Duration::from_millis(100));
        drop(held);
        call.join().unwrap()
    });
    assert!(waiting.ok(), "{} {}", waiting.stdout, waiting.stderr);
    assert!(!served(&waiting), "{}", waiting.stderr);
    assert!(
        waiting.stderr.contains("did not answer the call"),
        "{}",
        waiting.stderr
    );
    assert_eq!(net.leased(), ["10.143.0.2", "10.143.0.3"]);

    // A crash point reaches the server with the call: the server dies just
    // before the commit, the client runs the call itself and dies at the
    // same point, as a one-shot process would. Nothing of it is kept.
    let server = Server::start();
    let before = net.store_dump();
    let crashing = via(Call::attach("ADD", "c3"), server.path()).env(TEST_CRASH_AT, "commit");
    let out = net.run(&crashing);
    assert_eq!(out.code, None, "killed by a signal: {}", out.stderr);
    assert_eq!(net.store_dump(), before);
    let after = net.run(&via(Call::attach("ADD", "c3"), server.path()));
    assert!(
        after.ok() && !served(&after),
        "the server died: {}",
        after.stderr
    );
    assert_eq!(net.leased(), ["10.143.0.2", "10.143.0.3", "10.143.0.4"]);
}

#[test]
fn served_and_one_shot_calls_at_once_never_share_an_address() {
    let server = Server::start();
    let net = Net::host_local("1.0.0", "10.144.0.0/24");
    let outs: Vec<Outcome> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..24)
            .map(|i| {
                let socket = if i % 2 == 0 { server.path() } else { "" };
                let call = via(Call::attach("ADD", &format!("c{i}")), socket);
                let net = &net;
                s.spawn(move || net.run(&call))
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let mut addresses: Vec<String> = outs
        .iter()
        .map(|o| {
            assert!(o.ok(), "{}", o.stderr);
            o.json()["ips"][0]["address"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(outs.iter().filter(|o| served(o)).count(), 12);
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 24);
    assert_eq!(net.leased().len(), 24);
}

#[test]
fn a_server_follows_a_replaced_store_a_changed_policy_and_the_clients_directory() {
    let server = Server::start();
    let add = |id: &str| via(Call::attach("ADD", id), server.path());

    // The store removed between calls: the server's kept connection is
    // to a file no other call sees, so it is not used again.
    let net = Net::host_local("1.0.0", "10.145.0.0/24");
    assert_eq!(
        net.run(&add("c1")).json()["ips"][0]["address"],
        "10.145.0.2/24"
    );
    std::fs::remove_dir_all(net.data_dir()).unwrap();
    let out = net.run(&add("c2"));
    assert!(out.ok() && served(&out), "{}", out.stderr);
    assert_eq!(out.json()["ips"][0]["address"], "10.145.0.2/24");
    assert_eq!(net.leased(), ["10.145.0.2"]);

    // The policy file replaced: the next call runs the new one.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.wasm");
    std::fs::copy(test_policy("policy_template"), &policy).unwrap();
    let net = Net::with_ipam(
        "1.0.0",
        json!({"policy": policy, "subnet": "10.146.0.0/24", "node": "node-a"}),
    );
    assert_eq!(
        net.run(&add("c1")).json()["ips"][0]["address"],
        "10.146.0.2/24"
    );
    std::fs::copy(test_policy("policy_bare"), &policy).unwrap();
    let out = net.run(&add("c2"));
    assert!(out.ok() && served(&out), "{}", out.stderr);
    assert_eq!(out.json()["ips"][0]["address"], "10.250.0.2/24");

    // A relative dataDir is the client's, as for a one-shot call.
    let cwd = tempfile::tempdir().unwrap();
    let mut conf = Net::host_local("1.0.0", "10.147.0.0/24").conf;
    conf["ipam"]["dataDir"] = json!("relative-data");
    let mut child = Command::new(plugin())
        .env_clear()
        .envs(add("c1").vars())
        .current_dir(cwd.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        conf.to_string().as_bytes(),
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("served by"), "{stderr}");
    assert!(
        cwd.path()
            .join("relative-data")
            .join("wasm-ipam.db")
            .exists()
    );
}

/// The crash tests' kills (crash.rs), through a server: each kill point
/// ends the server and then, at the same point, the client that ran the
/// call itself. The store holds all of the call or none of it.
#[test]
fn a_served_add_killed_at_every_point_keeps_all_or_nothing() {
    let net = Net::host_local("1.1.0", "10.148.0.0/24");
    assert!(net.add("a").ok());
    let before = net.store_dump();
    let mut points = vec!["commit".to_string()];
    for n in 1.. {
        points.push(format!("call:{n}"));
        let mut server = Server::start();
        let point = points.last().unwrap();
        let call = via(Call::attach("ADD", "c"), server.path()).env(TEST_CRASH_AT, point);
        let out = net.run(&call);
        if out.code.is_some() {
            assert!(out.ok() && served(&out), "{point}: {}", out.stderr);
            assert!(n > 3, "ADD made only {} store calls", n - 1);
            break;
        }
        assert!(
            server.child.try_wait().unwrap().is_some(),
            "{point}: the server lives"
        );
        let _ = server.wait();
        assert_eq!(
            net.store_dump(),
            before,
            "killed at {point}, the store changed"
        );
    }
    assert_eq!(net.leased(), ["10.148.0.2", "10.148.0.3"]);
    // Killed just after the commit: the allocation stands. The client
    // runs the call again and the policy finds it, so the runtime gets an
    // error (where a one-shot process would have been killed), and its DEL
    // releases the address.
    let server = Server::start();
    let call = via(Call::attach("ADD", "d"), server.path()).env(TEST_CRASH_AT, "after-commit");
    let out = net.run(&call);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stdout.contains("duplicate allocation"),
        "{}",
        out.stdout
    );
    assert_eq!(net.leased(), ["10.148.0.2", "10.148.0.3", "10.148.0.4"]);
    assert!(net.run(&via(Call::attach("DEL", "d"), "")).ok());
    assert_eq!(net.leased(), ["10.148.0.2", "10.148.0.3"]);
}

/// The journal mode a fresh connection finds in the store's file.
fn journal_mode(net: &Net) -> String {
    rusqlite::Connection::open(net.data_dir().join("wasm-ipam.db"))
        .unwrap()
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap()
}

#[test]
fn one_shot_calls_join_the_servers_wal_and_switch_it_back_once_it_is_gone() {
    let mut server = Server::start();
    let net = Net::host_local("1.0.0", "10.149.0.0/24");
    let out = net.run(&via(Call::attach("ADD", "c1"), server.path()));
    assert!(out.ok() && served(&out), "{}", out.stderr);
    assert_eq!(journal_mode(&net), "wal");
    // A call that runs itself meanwhile neither waits for the server's
    // connections to go nor fails.
    let out = net.run(&via(Call::attach("ADD", "c2"), ""));
    assert!(out.ok() && !served(&out), "{}", out.stderr);
    assert_eq!(journal_mode(&net), "wal");
    server.signal("-TERM");
    assert!(server.wait().0.success());
    let out = net.run(&via(Call::attach("ADD", "c3"), server.path()));
    assert!(out.ok() && !served(&out), "{}", out.stderr);
    assert_eq!(journal_mode(&net), "delete");
    for gone in ["wasm-ipam.db-wal", "wasm-ipam.db-shm"] {
        assert!(!net.data_dir().join(gone).exists(), "{gone} left behind");
    }
    assert_eq!(net.leased(), ["10.149.0.2", "10.149.0.3", "10.149.0.4"]);
}

#[test]
fn a_stopped_server_costs_a_call_a_second_and_never_commits_it_afterwards() {
    let mut server = Server::start();
    let net = Net::host_local("1.0.0", "10.142.0.0/24");
    server.signal("-STOP");
    let out = net.run(&via(Call::attach("ADD", "c1"), server.path()));
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert!(!served(&out), "{}", out.stderr);
    assert!(
        out.stderr.contains("did not answer the call"),
        "{}",
        out.stderr
    );
    assert_eq!(net.leased(), ["10.142.0.2"]);
    // Resumed, the server finds the request its client gave up on, and
    // drops it instead of running it a second time.
    server.signal("-CONT");
    let mut log = std::io::BufReader::new(server.child.stderr.take().unwrap());
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut log, &mut line).unwrap() > 0 {
        if line.contains("after its client stopped waiting; dropped") {
            break;
        }
        line.clear();
    }
    assert!(
        line.contains("dropped"),
        "the server never said what it did"
    );
    assert_eq!(
        net.leased(),
        ["10.142.0.2"],
        "the abandoned ADD left nothing"
    );
    assert!(net.run(&via(Call::attach("DEL", "c1"), server.path())).ok());
    assert!(net.leased().is_empty());
}

/// Threads of process `pid`.
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn calls_stuck_on_one_store_hold_up_no_other_network() {
    let server = Server::start();
    let stuck = Net::host_local("1.0.0", "10.143.0.0/24");
    stuck.add_ip("first");
    // A call hung in its transaction holds the store's write lock.
    let held = rusqlite::Connection::open(stuck.data_dir().join("wasm-ipam.db")).unwrap();
    held.execute_batch("BEGIN IMMEDIATE").unwrap();
    let before = threads(server.child.id());
    std::thread::scope(|s| {
        let waiting: Vec<_> = (0..32)
            .map(|i| {
                let (stuck, socket) = (&stuck, server.path());
                s.spawn(move || stuck.run(&via(Call::attach("ADD", &format!("w{i}")), socket)))
            })
            .collect();
        // Until the server runs all 32, each waiting for the lock.
        for _ in 0..600 {
            if threads(server.child.id()) >= before + 32 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            threads(server.child.id()) >= before + 32,
            "the server took the calls"
        );
        // Another network's call, with the server full: it runs in its
        // own process at once, while the lock is still held. The limit
        // catches a call queued behind the stuck ones (their wait is 30 s).
        let other = Net::host_local("1.0.0", "10.144.0.0/24");
        let out = run_within(
            &via(Call::attach("ADD", "o1"), server.path()),
            &other.conf,
            Duration::from_secs(20),
        );
        assert!(
            out.ok() && !out.timed_out,
            "{} {} {}",
            out.status(),
            out.stdout,
            out.stderr
        );
        assert!(!served(&out), "{}", out.stderr);
        held.execute_batch("ROLLBACK").unwrap();
        for w in waiting {
            let out = w.join().unwrap();
            assert!(out.ok(), "{} {}", out.stdout, out.stderr);
        }
    });
    assert_eq!(stuck.leased().len(), 33);
}

#[test]
fn a_listener_of_another_user_is_never_told_a_call() {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let socket = open.join("wasm-ipam.sock");
    // A listener made by `nobody`, on a thread of its own (credentials are
    // per thread on Linux): the peer credentials a client sees are its.
    let listener = {
        let socket = socket.clone();
        std::thread::spawn(move || {
            rustix::thread::set_thread_uid(rustix::fs::Uid::from_raw(65534)).unwrap();
            std::os::unix::net::UnixListener::bind(&socket).unwrap()
        })
        .join()
        .unwrap()
    };
    listener.set_nonblocking(true).unwrap();
    let net = Net::host_local("1.0.0", "10.145.0.0/24");
    let out = net.run(&via(Call::attach("ADD", "c1"), socket.to_str().unwrap()));
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert!(!served(&out));
    assert!(
        out.stderr
            .contains("is served by user 65534, not by this process's user"),
        "{}",
        out.stderr
    );
    // It was never even written to: a connection, if any, carried nothing.
    if let Ok((mut conn, _)) = listener.accept() {
        conn.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 1];
        assert!(!matches!(conn.read(&mut buf), Ok(n) if n > 0));
    }
}

#[test]
fn a_server_of_an_older_build_that_does_not_acknowledge_is_still_heard() {
    // While the binary is upgraded under a running server, that server
    // answers without the acknowledgement: its answer is the call's, since
    // it committed what it ran.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("old.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let old = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let frame = |conn: &mut std::os::unix::net::UnixStream| {
            let mut len = [0u8; 4];
            conn.read_exact(&mut len).unwrap();
            let mut body = vec![0; u32::from_le_bytes(len) as usize];
            conn.read_exact(&mut body).unwrap();
            body
        };
        let request: Value = serde_json::from_slice(&frame(&mut conn)).unwrap();
        frame(&mut conn);
        let header = br#"{"status":0,"stderr":["wasm-ipam: served by an older server"]}"#;
        let body = br#"{"cniVersion":"1.0.0","ips":[{"address":"10.146.0.9/24"}]}"#;
        let mut answer = Vec::new();
        for part in [&header[..], &body[..]] {
            answer.extend_from_slice(&(part.len() as u32).to_le_bytes());
            answer.extend_from_slice(part);
        }
        std::io::Write::write_all(&mut conn, &answer).unwrap();
        request
    });
    let net = Net::host_local("1.0.0", "10.146.0.0/24");
    let out = net.run(&via(Call::attach("ADD", "c1"), socket.to_str().unwrap()));
    assert!(out.ok(), "{} {}", out.stdout, out.stderr);
    assert_eq!(out.json()["ips"][0]["address"], "10.146.0.9/24");
    assert!(
        out.stderr.contains("served by an older server"),
        "{}",
        out.stderr
    );
    assert!(net.leased().is_empty(), "the call ran once, in the server");
    let request = old.join().unwrap();
    assert!(request["deadline_ms"].as_u64().unwrap() > 0);
}
